"""A simulated second device, to prove on a CPU-only machine that code is device-agnostic.

``SimulatedTensor`` is a ``__torch_dispatch__`` wrapper subclass: it holds a real CPU tensor
(``elem``) and computes every op on it with real values, so data-dependent code (NMS, sampling,
Python loops, ``.item()``, ``.tolist()``) runs exactly as on the CPU; its outputs are wrapped
again. What it adds is a device tag, and it **raises** ``MixedDeviceError`` (naming the op and the
shape and device of every tensor argument) where real CUDA raises, and a little more:

- an op that mixes a tagged tensor with an untagged (plain CPU) tensor of one or more dimensions:
  elementwise ops, ``cat``, ``matmul``, ``where``, and indexing in both directions. CUDA accepts
  a 0-dim CPU tensor beside CUDA tensors (a "CPU scalar"), and so does this device. CUDA also
  accepts a CPU index tensor for a CUDA tensor (``cuda_x[cpu_idx]``, at the price of a host to
  device copy); this device does not, as ``../shared/STYLE.md`` asks ("index tensors live on the
  device of the tensor they index");
- so a tensor that code creates on the wrong device (``torch.zeros(n)`` without ``device=``, a
  module-level constant, ``torch.full(...)`` built on the CPU) is caught where it meets a tagged
  tensor;
- ``.numpy()`` / ``np.asarray`` of a tagged tensor (CUDA refuses them too: ``.cpu()`` first).

Moving: ``x.to(SIMULATED)``, ``x.to(other.device)``, ``x.cpu()``, ``x.to("cpu")``; modules with
``to_simulated(module)`` (parameters and buffers, ``module.to`` underneath). Factory functions
given ``device=SIMULATED`` (``torch.arange(n, device=x.device)``, ``torch.zeros(..., device=...)``,
``x.new_zeros``, ``torch.full_like``) make tagged tensors, **while ``simulated_device()`` is active**
(a ``TorchDispatchMode``: a factory has no tensor argument for the subclass to see). torchvision's
``nms``, ``batched_nms``, ``box_iou``, ``roi_align``, ``roi_pool`` are dispatcher ops, so they are
unwrapped and rewrapped like any other (and their backward too). ``torch.tensor`` / ``torch.as_tensor``
/ ``Tensor.new_tensor`` given the device are patched while the mode is active: torch builds those
below the dispatcher. Under ``torch.inference_mode`` (``predict_images``) the wrappers stay normal
tensors, as views of normal CPU tensors do there. Lightning runs a whole ``fit`` on the device with
a ``SingleDeviceStrategy(device=SIMULATED)`` (``test_simulated_device.py``).

**How the device reports.** ``SIMULATED = torch.device("meta")``. Not ``cuda``: this torch is a CUDA
build, and a tensor reporting ``cuda`` sends autograd's backward to CUDA device threads (there is no
GPU: it fails) and lets code take ``torch.cuda.*`` / ``pin_memory`` branches that cannot run here.
``meta`` is a real device type that every part of torch knows carries no data (autograd runs it on
the CPU thread; a tagged tensor that ever escaped the wrapper into a kernel would fail loudly
rather than compute silently), it is not ``cpu`` (so ``device=x.device`` is told apart from a
default-device factory), and no library code branches on it (``grep -rn meta detection
segmentation``). ``x.device == SIMULATED`` is what the tests assert.

Limits (what it does not prove):

- CUDA-only code branches (``if x.is_cuda``) do not run; the library has none.
- Autocast does not reach the wrapped ops (there is no autocast for ``meta``): mixed precision is
  checked on the CPU itself (``test_precision.py``), not on this device.
- Ops with no tensor argument and no ``device`` argument that still pick a device (none known) and
  ops reached outside the dispatcher (``data_ptr()``, ``untyped_storage()``) are not covered.
- A CPU ``torch.Generator`` passed with ``device=SIMULATED`` is not refused (CUDA refuses it).
- Kernels are the CPU ones: CUDA-only numerics, non-determinism (``index_put_`` with
  ``accumulate``, atomics), and half-precision support of a kernel are not checked.
- Outside ``simulated_device()`` a factory given ``device=SIMULATED`` makes a real (data-less)
  meta tensor; mixing it with a tagged tensor then raises too.
"""

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.overrides import _get_current_function_mode_stack
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._device import DeviceContext, _device_constructors
from torch.utils._pytree import tree_map

SIMULATED = torch.device("meta")
CPU = torch.device("cpu")

aten = torch.ops.aten
_TO_OTHER = {aten.to.other}  # x.to(other): other's device, tagged or not
# Ops that move data between devices: their whole purpose is to mix them.
_CROSS_DEVICE_OPS = {
    aten._to_copy.default, aten.copy_.default, aten.copy.default, aten._copy_from.default,
    aten.to.device, aten.to.dtype_layout, aten.to.dtype, aten.to.other,
}


class MixedDeviceError(RuntimeError):
    """An op mixed tensors of the simulated device with CPU tensors (CUDA would raise)."""


def _describe(x: object) -> str:
    if isinstance(x, SimulatedTensor):
        return f"simulated {str(x.dtype).removeprefix('torch.')}{list(x.shape)}"
    if isinstance(x, Tensor):
        return f"{x.device.type} {str(x.dtype).removeprefix('torch.')}{list(x.shape)}"
    return type(x).__name__


class SimulatedTensor(Tensor):
    """A CPU tensor tagged as living on the simulated device (see the module docstring)."""

    elem: Tensor
    __slots__ = ["elem"]
    __torch_function__ = torch._C._disabled_torch_function_impl

    @staticmethod
    def __new__(cls, elem: Tensor) -> "SimulatedTensor":
        if isinstance(elem, SimulatedTensor) or elem.device != CPU:
            raise TypeError(f"SimulatedTensor wraps a plain CPU tensor, got {_describe(elem)}")
        wrapper = Tensor._make_wrapper_subclass(
            cls, elem.size(), strides=elem.stride(), storage_offset=elem.storage_offset(),
            dtype=elem.dtype, layout=elem.layout, device=SIMULATED, requires_grad=False,
        )
        wrapper.elem = elem
        return wrapper

    def __repr__(self) -> str:
        return f"SimulatedTensor({self.elem!r})"

    def tolist(self):  # torch refuses .tolist() on any subclass; on CUDA it copies to the host
        return self.elem.tolist()

    def numpy(self, *, force: bool = False):  # CUDA refuses too
        raise TypeError(f"can't convert a simulated-device tensor {list(self.shape)} to numpy: use .cpu() first (CUDA raises here)")

    def __array__(self, dtype=None, copy=None):
        return self.numpy()

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _dispatch(func, args, kwargs or {})


def _is_simulated_device(device: object) -> bool:
    return device is not None and torch.device(device) == SIMULATED


@functools.cache
def _schema_facts(func) -> tuple[int | None, bool, tuple | None]:
    """Per op, from its schema: the ``device`` argument's position (None: none), whether it is
    keyword-only, and for ops returning written-to arguments (``add_``, ``copy_``, ``out=``) the
    ``(position, name)`` of each such argument (None otherwise)."""
    arguments = func._schema.arguments
    device = next((i for i, a in enumerate(arguments) if a.name == "device"), None)
    kwarg_only = device is not None and arguments[device].kwarg_only
    returns = func._schema.returns
    aliased = None
    if returns and all(r.alias_info is not None and r.alias_info.is_write for r in returns):
        aliased = []
        for ret in returns:
            for i, a in enumerate(arguments):
                if a.alias_info is not None and a.alias_info.is_write and set(a.alias_info.before_set) == set(ret.alias_info.before_set):
                    aliased.append((i, a.name))
                    break
            else:
                aliased = None
                break
        aliased = tuple(aliased) if aliased is not None else None
    return device, kwarg_only, aliased


def _tensors(values) -> Iterator[Tensor]:
    """The tensors among an op's arguments (they nest one level at most: ``Tensor[]``, ``Tensor?[]``)."""
    for value in values:
        if isinstance(value, Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (v for v in value if isinstance(v, Tensor))


def _unwrap(value):
    if isinstance(value, SimulatedTensor):
        return value.elem
    if isinstance(value, (list, tuple)) and any(isinstance(v, SimulatedTensor) for v in value):
        return type(value)(v.elem if isinstance(v, SimulatedTensor) else v for v in value)
    return value


def _dispatch(func, args: tuple, kwargs: dict):
    tensors = [*_tensors(args), *_tensors(kwargs.values())]
    tagged = False
    for x in tensors:
        if isinstance(x, SimulatedTensor):
            tagged = True
        elif x.device == SIMULATED:
            raise MixedDeviceError(
                f"{func} got a data-less meta tensor {list(x.shape)}: it was made with device=SIMULATED "
                "outside simulated_device() (or by a path that bypasses the dispatch mode)"
            )
    if tagged and func not in _CROSS_DEVICE_OPS:
        cpu = [x for x in tensors if not isinstance(x, SimulatedTensor) and x.dim() > 0]
        if cpu:
            described = ", ".join(_describe(x) for x in tensors)
            raise MixedDeviceError(
                f"{func} mixes tensors on the simulated device with CPU tensors of {len(cpu)} "
                f"non-scalar argument(s) (real CUDA raises here): {described}"
            )
    position, kwarg_only, aliased = _schema_facts(func)
    device = None
    if position is not None:
        device = args[position] if position < len(args) and not kwarg_only else kwargs.get("device")
    to_simulated = device is not None and torch.device(device) == SIMULATED
    if not tagged and not to_simulated:
        return func(*args, **kwargs)

    cpu_args = tuple(_unwrap(a) for a in args)
    cpu_kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
    if to_simulated:
        if position < len(args) and not kwarg_only:
            cpu_args = (*cpu_args[:position], CPU, *cpu_args[position + 1 :])
        else:
            cpu_kwargs["device"] = CPU
    out = func(*cpu_args, **cpu_kwargs)
    if aliased is not None:  # in-place and out= ops return their (already tagged or plain) argument itself
        values = [args[i] if i < len(args) else kwargs[name] for i, name in aliased]
        return values[0] if len(values) == 1 else tuple(values)
    # Tagged outputs unless the op sends them to the CPU: x.cpu(), zeros_like(x, device="cpu"), x.to(cpu_tensor).
    if device is not None:
        wrap_output = to_simulated
    elif func in _TO_OTHER:
        wrap_output = isinstance(args[1], SimulatedTensor)
    else:
        wrap_output = True
    if not wrap_output:
        return out
    # The wrappers are normal tensors even under inference_mode: autograd's view tracking then
    # sets their version counters as it does for views of normal CPU tensors there.
    with torch.inference_mode(False):
        if isinstance(out, Tensor):
            return SimulatedTensor(out)
        return tree_map(lambda x: SimulatedTensor(x) if isinstance(x, Tensor) else x, out)


class _SimulatedFactories(TorchDispatchMode):
    """Routes every op through ``_dispatch``, so factories given ``device=SIMULATED`` make tagged tensors."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return _dispatch(func, args, kwargs or {})


def _from_data(make):
    """``torch.tensor`` & co. given ``device=SIMULATED``: torch builds a data-less meta tensor for
    them in C++, below the dispatch mode; build on the CPU and move instead."""

    def from_data(*args, **kwargs):
        device = kwargs.get("device")
        if device is None and make is _NEW_TENSOR and isinstance(args[0], SimulatedTensor):
            device = SIMULATED
        if device is None and make is not _NEW_TENSOR:  # under ``with torch.device(SIMULATED)``, as Lightning's init_module
            device = _default_device()
        if not _is_simulated_device(device):
            return make(*args, **kwargs)
        kwargs["device"] = CPU
        requires_grad = kwargs.pop("requires_grad", False)
        if make is _NEW_TENSOR:
            args = (args[0].elem, *args[1:])
        return make(*args, **kwargs).to(SIMULATED).requires_grad_(requires_grad)

    return from_data


def _default_device() -> torch.device | None:
    """The device of the innermost ``with torch.device(...)`` (``torch.get_default_device()`` calls ``torch.tensor``)."""
    for mode in reversed(_get_current_function_mode_stack()):
        if isinstance(mode, DeviceContext):
            return mode.device
    return None


# ``with torch.device(...)`` recognises factories by identity, in a set cached on first use: fill it
# now, with the real ``torch.tensor`` & co., before ``simulated_device()`` ever patches them.
_device_constructors()
_NEW_TENSOR = Tensor.new_tensor
_FROM_DATA = {(torch, "tensor"): torch.tensor, (torch, "as_tensor"): torch.as_tensor, (Tensor, "new_tensor"): _NEW_TENSOR}


@contextmanager
def simulated_device() -> Iterator[torch.device]:
    """Within it, factories given ``device=SIMULATED`` make tagged tensors. Yields ``SIMULATED``."""
    previous = {key: getattr(*key) for key in _FROM_DATA}  # re-entrant: restore what was there
    for (owner, name), make in _FROM_DATA.items():
        setattr(owner, name, _from_data(make))
    try:
        with _SimulatedFactories():
            yield SIMULATED
    finally:
        for (owner, name), attribute in previous.items():
            setattr(owner, name, attribute)


def to_simulated(obj):
    """A tensor, a module (in place, returned), or a nest of lists / tuples / dicts of tensors on the simulated device."""
    with simulated_device():
        if isinstance(obj, nn.Module):
            return obj.to(SIMULATED)
        return tree_map(lambda x: x.to(SIMULATED) if isinstance(x, Tensor) else x, obj)


def to_cpu(obj):
    """The inverse of ``to_simulated`` for nests of tensors."""
    return tree_map(lambda x: x.cpu() if isinstance(x, Tensor) else x, obj)


def is_simulated(x: object) -> bool:
    return isinstance(x, SimulatedTensor) and x.device == SIMULATED
