"""Generate the shapes dataset (VOC + COCO layouts) and print where it is.

    python scripts/make_shapes.py --out data/shapes --train 600 --val 100 --test 100
"""

import argparse
import time

from datasets.shapes_writer import write_shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/shapes", help="output directory")
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--val", type=int, default=100)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--single-object", action="store_true", help="one object per image (localization head)")
    args = parser.parse_args()

    start = time.perf_counter()
    layout = write_shapes(
        args.out,
        sizes={"train": args.train, "val": args.val, "test": args.test},
        image_size=args.image_size,
        seed=args.seed,
        single_object=args.single_object,
    )
    print(f"wrote {args.train + args.val + args.test} images in {time.perf_counter() - start:.1f} s")
    print(f"  VOC layout:  {layout.voc_root}")
    print(f"  COCO layout: {layout.coco_ann('train').parent}/instances_{{train,val,test}}.json")


if __name__ == "__main__":
    main()
