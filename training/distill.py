"""Knowledge distillation for ``training.train``: a small student learns from the vote
distribution and from a wider teacher's softened outputs on the same augmented batch.

Two kinds of teacher:

* an architecture name (``--teacher edge-l``): the teacher is trained alongside the
  student from its own random start (online distillation, one run, no earlier run
  needed); the teacher learns from the labels only, the student from both;
* a trained network (``--teacher runs/wide/best.keras``): frozen, run in inference mode;
  several, comma-separated (``--teacher a/best.keras,b/best.keras``): frozen, and the
  teacher's answer is the mean of their probabilities (a better teacher than either).

The trainer's output is the student's and the teacher's probabilities side by side, so
one plain Keras loss and metric serve every backend. Probabilities are turned back into
logits with ``log`` (softmax is shift-invariant, so nothing is lost).

``--logit-adjust tau`` trains the student on logits shifted by ``tau * log(prior)``
(Menon et al., 2021): at inference, without the shift, rare classes (contempt, disgust,
fear) are no longer drowned by neutral and happiness.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

EPS = 1e-7


def class_prior(targets: np.ndarray) -> np.ndarray:
    """Mean training target per class, floored so that log() stays finite."""
    prior = np.asarray(targets, np.float64).mean(axis=0)
    prior = np.maximum(prior, 1e-4)
    return (prior / prior.sum()).astype(np.float32)


def teacher_files(spec: str) -> list[str]:
    """The trained networks a ``--teacher`` spec names (one, or several comma-separated)."""
    return [part.strip() for part in spec.split(",")]


def teacher_problem(spec: str, mirrored: bool = False) -> str:
    """Why ``--teacher spec`` cannot be used ('' when it can), checked before data loads."""
    from training.models import ARCHITECTURES

    if spec in ARCHITECTURES:
        return ("--teacher-views flip needs a trained teacher (an earlier run's best.keras), "
                "not one trained alongside") if mirrored else ""
    files = teacher_files(spec)
    if len(files) > 1:
        trained_alongside = [f for f in files if f in ARCHITECTURES]
        if trained_alongside:
            return (f"--teacher {spec}: several teachers must all be trained networks (an earlier run's "
                    f"best.keras); {', '.join(trained_alongside)} is an architecture")
    for f in files:
        if not f or not Path(f).is_file():
            return (f"--teacher {spec}: {f or '(empty)'} is neither an architecture "
                    f"({', '.join(sorted(ARCHITECTURES))}) nor a trained network file; "
                    "pass an earlier run's best.keras")
    return ""


def load_teacher(spec: str, mirrored: bool = False):
    """The teacher network and whether it is trained alongside (``True``) or frozen. Either
    is wrapped under the name ``teacher-<name>``: the student may be the same architecture,
    and names must be unique in one model.

    ``mirrored`` (a frozen teacher only): the teacher answers with the mean of its outputs
    on the face and on its mirror image, as a two-view model does on the device, so a
    student run on one view learns the two-view answer (one view of ``edge-l`` fits the
    time a face may take; two do not)."""
    import keras

    from training.models import ARCHITECTURES, build

    problem = teacher_problem(spec, mirrored)
    if problem:
        raise SystemExit(problem)
    online = spec in ARCHITECTURES
    files = teacher_files(spec)
    if len(files) > 1:
        inner = _mean_of(files)
    else:
        inner = build(spec) if online else keras.models.load_model(files[0], compile=False)
    if not online:
        inner.trainable = False
    if not mirrored:
        return keras.Model(inner.inputs[0], inner.outputs[0], name=f"teacher-{inner.name}"), online
    face = keras.Input(inner.inputs[0].shape[1:], name="teacher_face")
    both = keras.layers.Average()([inner(face), inner(keras.ops.flip(face, axis=2))])  # axis 2: left-right
    return keras.Model(face, both, name=f"teacher-{inner.name}"), online


def _mean_of(files: list[str]):
    """One network whose answer is the mean of the trained networks' probabilities. Each
    is renamed ``member<i>``: two runs of one architecture share their names."""
    import keras

    members = []
    for i, f in enumerate(files):
        net = keras.models.load_model(f, compile=False)
        members.append(keras.Model(net.inputs[0], net.outputs[0], name=f"member{i}"))
    inputs = {tuple(m.inputs[0].shape[1:]) for m in members}
    classes = {m.outputs[0].shape[-1] for m in members}
    if len(inputs) > 1 or len(classes) > 1:
        raise SystemExit(f"--teacher {','.join(files)}: the networks differ (inputs {sorted(inputs)}, "
                         f"classes {sorted(classes)}); several teachers must read the same faces and "
                         "name the same classes")
    face = keras.Input(members[0].inputs[0].shape[1:], name="face")
    mean = keras.layers.Average(name="mean_probs")([m(face) for m in members])
    return keras.Model(face, mean, name=f"mean-of-{len(files)}")


def make_loss(num_classes: int, alpha: float, temperature: float, online: bool,
              prior: np.ndarray | None = None, tau: float = 0.0):
    """Loss over ``y_pred = [student probs | teacher probs]`` and soft-label ``y_true``."""
    from keras import ops

    shift = None if prior is None or not tau else ops.convert_to_tensor(tau * np.log(prior)[None, :])

    def distillation_loss(y_true, y_pred):
        student, teacher = y_pred[:, :num_classes], y_pred[:, num_classes:]
        logits = ops.log(student + EPS)
        if shift is not None:
            logits = logits + shift
        hard = -ops.sum(y_true * ops.log_softmax(logits, axis=-1), axis=-1)
        t = ops.stop_gradient(teacher)
        soft_target = ops.softmax(ops.log(t + EPS) / temperature, axis=-1)
        soft_student = ops.log_softmax(ops.log(student + EPS) / temperature, axis=-1)
        kd = ops.sum(soft_target * (ops.log(soft_target + EPS) - soft_student), axis=-1) * temperature ** 2
        loss = (1.0 - alpha) * hard + alpha * kd
        if online:
            loss = loss - ops.sum(y_true * ops.log(teacher + EPS), axis=-1)
        return loss

    return distillation_loss


def metrics(num_classes: int):
    """Student accuracy (named ``accuracy`` so best-model saving reads it as before) and
    the teacher's, both against the argmax of the target."""
    from keras import ops

    def accuracy(y_true, y_pred):
        return ops.cast(ops.argmax(y_true, axis=-1) == ops.argmax(y_pred[:, :num_classes], axis=-1), "float32")

    def teacher_accuracy(y_true, y_pred):
        return ops.cast(ops.argmax(y_true, axis=-1) == ops.argmax(y_pred[:, num_classes:], axis=-1), "float32")

    return [accuracy, teacher_accuracy]
