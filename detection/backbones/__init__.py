"""Shared CNN backbones with named taps (see ``base.Backbone``)."""

from detection.backbones.base import Backbone
from detection.backbones.efficientnet import EfficientNetLite0
from detection.backbones.mobilenet import MobileNetV3
from detection.backbones.resnet import ResNet
from detection.backbones.small import SmallCNN
from detection.backbones.tap import SingleTap
from detection.backbones.valid_cnn import ValidCNN
from detection.backbones.vgg import VGG16, vgg16_fc_as_conv

__all__ = ["Backbone", "EfficientNetLite0", "MobileNetV3", "ResNet", "SingleTap", "SmallCNN", "VGG16", "ValidCNN", "vgg16_fc_as_conv"]
