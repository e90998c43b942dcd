"""Sequences of word indices of different lengths (toy "reviews"), padded with pad_sequences, read by
Embedding + Conv1D + GlobalMaxPooling1D: the shape of keras.io's text classification examples.
A review is positive when it holds the phrase "not bad" (tokens 3, 4) or "great" (token 5)."""
import numpy as np

import convforge as keras
from convforge import layers

keras.utils.set_random_seed(7)
rng = np.random.default_rng(7)
vocabulary, n = 60, 1600
reviews, labels = [], []
for _ in range(n):
    words = list(rng.integers(6, vocabulary, rng.integers(4, 50)))
    positive = rng.random() < 0.5
    if positive:
        at = int(rng.integers(0, len(words)))
        words[at:at] = [3, 4] if rng.random() < 0.5 else [5]
    else:
        words.insert(int(rng.integers(0, len(words))), 4)  # "bad" alone: a decoy
    reviews.append(words)
    labels.append(float(positive))
x = keras.utils.pad_sequences(reviews, maxlen=40)  # long reviews lose their first words
y = np.array(labels, dtype="float32")
assert x.shape == (n, 40) and x.dtype == np.int32 and (x[np.array([len(r) for r in reviews]) < 40, 0] == 0).all()

model = keras.Sequential([
    keras.Input(shape=(40,)),
    layers.Embedding(vocabulary, 16),
    layers.Conv1D(32, 2, activation="relu"),
    layers.GlobalMaxPooling1D(),
    layers.Dense(1, activation="sigmoid"),
])
assert [layer.count_params() for layer in model.layers] == [960, 1056, 0, 33]
model.compile(optimizer=keras.optimizers.Adam(5e-3), loss="binary_crossentropy", metrics=["accuracy"])
model.fit(x[:1300], y[:1300], epochs=8, batch_size=32, verbose=0)
loss, accuracy = model.evaluate(x[1300:], y[1300:], verbose=0)
print(f"accuracy {accuracy:.3f}")
# A phrase cut off by maxlen (in the first words of a long review) cannot be found: a few per cent.
assert accuracy > 0.85, accuracy
