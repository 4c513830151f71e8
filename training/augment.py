"""Training-time augmentation that generalises beyond FER+ (run inside tf.data).

Geometric: flips, rotation, zoom and shift of the crop (what a face detector's box
jitter looks like). Photometric: brightness, contrast, gamma, blur and sensor noise
(what another camera and room look like). Random erasing stands in for hands, glasses
and hair. All per sample, vectorised over a batch.
"""
from __future__ import annotations


def make_augmenter(seed: int = 0, strength: float = 1.0):
    import keras
    import tensorflow as tf
    from keras import layers

    geometric = keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.05 * strength, fill_mode="reflect", seed=seed + 1),
            layers.RandomZoom((-0.15 * strength, 0.15 * strength), fill_mode="reflect", seed=seed + 2),
            layers.RandomTranslation(0.1 * strength, 0.1 * strength, fill_mode="reflect", seed=seed + 3),
        ],
        name="geometric",
    )
    gen = tf.random.Generator.from_seed(seed + 4)

    def per_sample(batch, low, high):
        return gen.uniform([batch, 1, 1, 1], low, high)

    def augment(images, targets):
        x = tf.cast(images, tf.float32) / 255.0
        x = geometric(x, training=True)
        b = tf.shape(x)[0]
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = (x - mean) * per_sample(b, 1 - 0.35 * strength, 1 + 0.35 * strength) + mean
        x = x + per_sample(b, -0.15 * strength, 0.15 * strength)
        x = tf.clip_by_value(x, 0.0, 1.0)
        x = tf.pow(x + 1e-6, tf.exp(per_sample(b, -0.4 * strength, 0.4 * strength)))
        blurred = tf.nn.avg_pool2d(x, 3, 1, "SAME")
        x = tf.where(per_sample(b, 0, 1) < 0.2 * strength, blurred, x)
        x = x + gen.normal(tf.shape(x)) * per_sample(b, 0, 0.03 * strength)
        # random erasing: one box of 8-20 px in a quarter of the images
        size = gen.uniform([b, 1, 1, 1], 8, 20)
        cy, cx = per_sample(b, 0, 48), per_sample(b, 0, 48)
        grid = tf.cast(tf.range(48), tf.float32)
        inside_y = tf.abs(tf.reshape(grid, [1, 48, 1, 1]) - cy) < size / 2
        inside_x = tf.abs(tf.reshape(grid, [1, 1, 48, 1]) - cx) < size / 2
        erase = inside_y & inside_x & (per_sample(b, 0, 1) < 0.25 * strength)
        x = tf.where(erase, mean, x)
        return tf.clip_by_value(x, 0.0, 1.0), targets

    return augment
