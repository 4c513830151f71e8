"""Keras architectures: ``paper`` (the seed paper's CNN, the baseline) and ``edge`` (ours).

Both take a (48, 48, 1) float input equal to ``pixel / 255`` (manifest scale 1/255,
offset 0) and end in an 8-way softmax in FER+ order.
"""
from __future__ import annotations

from pathlib import Path

INPUT_SCALE = 1.0 / 255.0
INPUT_OFFSET = 0.0
NUM_CLASSES = 8


def paper_cnn(num_classes: int = NUM_CLASSES):
    """The seed paper's CNN as described: Conv32, Conv64, pool, dropout, two Conv128
    each with pooling, dropout, flatten, Dense 1024, softmax (Adam 1e-4, batch 14)."""
    import keras
    from keras import layers

    inputs = keras.Input((48, 48, 1), name="face")
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Conv2D(128, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(128, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(1024, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="emotion")(x)
    return keras.Model(inputs, outputs, name="paper")


def edge_cnn(num_classes: int = NUM_CLASSES, widths=(64, 128, 256), dropout: float = 0.3,
             stem: int = 32, full_res: int = 0, name: str = "edge"):
    """Compact CNN for int8 on ARM cores.

    A plain 3x3 stem at full resolution (optionally followed by ``full_res`` channels of
    separable blocks at 48x48, where the fine detail of mouth and eyes still is), then per
    stage two depthwise-separable blocks (depthwise 3x3 -> BN -> ReLU -> pointwise -> BN
    -> ReLU) with a residual add where shapes allow and a max-pool before each stage;
    global average pooling and one dense layer. Only ops XNNPACK runs in int8 (conv,
    depthwise conv, add, max-pool, mean, fully connected); BN folds into the convs at
    conversion.
    """
    import keras
    from keras import layers

    def conv_bn(x, filters, kernel=3):
        x = layers.Conv2D(filters, kernel, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x)

    def separable(x, filters):
        y = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        y = layers.BatchNormalization()(y)
        y = layers.ReLU()(y)
        y = layers.Conv2D(filters, 1, use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        if x.shape[-1] == filters:
            y = layers.Add()([x, y])
        return layers.ReLU()(y)

    inputs = keras.Input((48, 48, 1), name="face")
    x = conv_bn(inputs, stem)
    if full_res:
        x = separable(x, full_res)
        x = separable(x, full_res)
    for width in widths:
        x = layers.MaxPooling2D(2)(x)
        x = separable(x, width)
        x = separable(x, width)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="emotion")(x)
    return keras.Model(inputs, outputs, name=name)


def edge_m(num_classes: int = NUM_CLASSES):
    """``edge`` plus a full-resolution stage (~0.15M parameters, ~4x the MACs)."""
    return edge_cnn(num_classes, full_res=32, dropout=0.2, name="edge-m")


def edge_l(num_classes: int = NUM_CLASSES):
    """Wider ``edge-m``: 48-channel full-resolution stage, stages of 96/192/384."""
    return edge_cnn(num_classes, widths=(96, 192, 384), stem=32, full_res=48, dropout=0.3, name="edge-l")


def edge_w(num_classes: int = NUM_CLASSES):
    """``edge`` with a quarter more channels in every stage (80/160/320): ~1.14x the
    int8 time per view of ``edge`` on one core, 1.5x the parameters; a distillation
    student that still fits the time of ``edge`` with two views."""
    return edge_cnn(num_classes, widths=(80, 160, 320), name="edge-w")


ARCHITECTURES = {"paper": paper_cnn, "edge": edge_cnn, "edge-w": edge_w, "edge-m": edge_m, "edge-l": edge_l}


class NetworkError(ValueError):
    """A file that is not a network training, quantize and evaluate can take; says why."""


def unreadable_network(path: Path, exc: Exception) -> str:
    """What a file that Keras could not load as a network is, for a message."""
    if Path(path).suffix == ".tflite":
        return "a TFLite model (training.quantize's export for the device), which Keras cannot load"
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"not a Keras network that can be read ({type(exc).__name__}: {first})"


def load_network(path: Path):
    """A trained network of this contract (``io_problem``) from a ``.keras`` file, or a
    ``NetworkError`` that says what the file is: quantize and evaluate showed Keras's
    traceback for a .tflite or a cut-short file."""
    import keras

    try:
        net = keras.models.load_model(path, compile=False)
    except Exception as exc:  # whatever Keras found wrong with it: say what it is
        raise NetworkError(f"{path} is {unreadable_network(Path(path), exc)}; pass a run's best.keras "
                           "(or final.keras / averaged.keras)") from None
    problem = io_problem(net)
    if problem:
        raise NetworkError(f"{path} is not an emotion network of this project: {problem}")
    return net


def io_problem(net) -> str:
    """What makes ``net`` not a network of this contract (one (48, 48, 1) input, an 8-way
    output in FER+ order), "" if nothing: the manifest, the evaluation and the device assume
    it. A 7-class FER2013 network was scored as if its outputs were the first 7 of FER+'s
    8, and quantised beside a manifest that promised 48x48x1 and 8 labels."""
    if len(net.inputs) != 1 or len(net.outputs) != 1:
        return f"it has {len(net.inputs)} inputs and {len(net.outputs)} outputs, not one of each"
    given, answers = tuple(net.inputs[0].shape[1:]), net.outputs[0].shape
    if given != (48, 48, 1):
        return f"it reads faces of shape {given}, not (48, 48, 1) (48x48 grayscale)"
    if len(answers) != 2 or answers[-1] != NUM_CLASSES:
        return f"its output has shape {tuple(answers[1:])}, not ({NUM_CLASSES},) (the 8 FER+ emotions)"
    return ""


def build(arch: str):
    try:
        return ARCHITECTURES[arch]()
    except KeyError:
        raise ValueError(f"architecture {arch!r} is not known; use one of {sorted(ARCHITECTURES)}") from None
