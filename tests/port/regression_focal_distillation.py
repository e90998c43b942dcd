"""Beyond cross-entropy: a regression with LogCosh and its metrics (RMSE, R2, MAPE), an imbalanced
"is it a shirt?" classifier with focal loss, and a student distilled from a teacher with KLDivergence."""
import numpy as np

import convforge as keras
from convforge import layers

keras.utils.set_random_seed(5)
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train = x_train[:4000].reshape(-1, 784).astype("float32") / 255
x_test = x_test[:1000].reshape(-1, 784).astype("float32") / 255
y_train, y_test = y_train[:4000], y_test[:1000]

# 1. Regression: how much of the picture is ink (the fraction of pixels brighter than 0.5)?
ink_train = (x_train > 0.5).mean(axis=1, keepdims=True).astype("float32")
ink_test = (x_test > 0.5).mean(axis=1, keepdims=True).astype("float32")
regressor = keras.Sequential([
    layers.Input(shape=(784,)),
    layers.Dense(64, activation="relu"),
    layers.Dense(1),
])
regressor.compile(
    optimizer=keras.optimizers.Adam(1e-3),
    loss="log_cosh",
    metrics=["mse", keras.metrics.RootMeanSquaredError(), keras.metrics.R2Score(), "mape", "msle"],
)
regressor.fit(x_train, ink_train, epochs=6, batch_size=64, verbose=0)
scores = regressor.evaluate(x_test, ink_test, return_dict=True, verbose=0)
print(scores)
assert set(scores) == {"loss", "mse", "root_mean_squared_error", "r2_score", "mape", "msle"}
assert scores["r2_score"] > 0.8, scores
assert abs(scores["root_mean_squared_error"] - np.sqrt(scores["mse"])) < 1e-4
predicted = regressor.predict(x_test, verbose=0)
r2 = 1 - ((ink_test - predicted) ** 2).sum() / ((ink_test - ink_test.mean()) ** 2).sum()
assert abs(r2 - scores["r2_score"]) < 1e-3

# 2. Imbalanced binary classification: shirts (class 6) are a tenth of the images.
is_shirt_train = (y_train == 6).astype("float32").reshape(-1, 1)  # (n, 1), as the output: Keras's focal loss wants it
is_shirt_test = (y_test == 6).astype("float32").reshape(-1, 1)
detector = keras.Sequential([
    layers.Input(shape=(784,)),
    layers.Dense(64, activation="relu"),
    layers.Dense(1, activation="sigmoid"),
])
detector.compile(
    optimizer=keras.optimizers.Adam(1e-3),
    loss=keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.75, gamma=2.0),
    metrics=[keras.metrics.AUC(name="auc"), keras.metrics.Recall(name="recall"), "binary_crossentropy",
             keras.metrics.TruePositives(name="tp"), keras.metrics.FalsePositives(name="fp"),
             keras.metrics.TrueNegatives(name="tn"), keras.metrics.FalseNegatives(name="fn")],
)
detector.fit(x_train, is_shirt_train, epochs=5, batch_size=64, verbose=0)
scores = detector.evaluate(x_test, is_shirt_test, return_dict=True, verbose=0)
print(scores)
assert scores["auc"] > 0.8 and scores["recall"] > 0.2, scores
# the confusion matrix of the 1000 test images: its cells add up to the shirts and the rest
assert scores["tp"] + scores["fn"] == is_shirt_test.sum() and scores["fp"] + scores["tn"] == 1000 - is_shirt_test.sum()
assert abs(scores["recall"] - scores["tp"] / (scores["tp"] + scores["fn"])) < 1e-6
assert scores["loss"] < scores["binary_crossentropy"]  # the focal factor down-weighs every sample

# 3. Distillation: a small student learns the teacher's probabilities (soft targets) with KLDivergence.
teacher = keras.Sequential([
    layers.Input(shape=(784,)),
    layers.Dense(128, activation="relu"),
    layers.Dense(10, activation="softmax"),
])
teacher.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
teacher.fit(x_train, y_train, epochs=4, batch_size=64, verbose=0)
soft_train = teacher.predict(x_train, verbose=0)
soft_test = teacher.predict(x_test, verbose=0)
student = keras.Sequential([
    layers.Input(shape=(784,)),
    layers.Dense(16, activation="relu"),
    layers.Dense(10, activation="softmax"),
])
student.compile(optimizer=keras.optimizers.Adam(2e-3), loss=keras.losses.KLDivergence(),
                metrics=["categorical_accuracy", keras.metrics.CosineSimilarity()])
history = student.fit(x_train, soft_train, epochs=6, batch_size=64, verbose=0)
assert history.history["loss"][-1] < history.history["loss"][0]
scores = student.evaluate(x_test, soft_test, return_dict=True, verbose=0)
print(scores)
assert scores["categorical_accuracy"] > 0.75 and scores["cosine_similarity"] > 0.8, scores
agreement = (student.predict(x_test, verbose=0).argmax(1) == y_test).mean()
assert agreement > 0.7, agreement
