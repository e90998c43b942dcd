"""One-hot labels, categorical cross-entropy with label smoothing, class weights, precision/recall."""
import numpy as np

import convforge as keras
from convforge import layers

keras.utils.set_random_seed(3)
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train = x_train[:3000].reshape(-1, 28, 28, 1).astype("float32") / 255
x_test = x_test[:1000].reshape(-1, 28, 28, 1).astype("float32") / 255
y_train_1h = keras.utils.to_categorical(y_train[:3000], 10)
y_test_1h = keras.utils.to_categorical(y_test[:1000], 10)
assert y_train_1h.shape == (3000, 10)

model = keras.Sequential([
    layers.Input(shape=(28, 28, 1)),
    layers.Conv2D(16, 5, strides=2, activation="relu", kernel_initializer="he_normal"),
    layers.Flatten(),
    layers.Dense(10, activation="softmax"),
])
model.compile(
    optimizer=keras.optimizers.Adam(learning_rate=2e-3),
    loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
    metrics=["categorical_accuracy", keras.metrics.Precision(), keras.metrics.Recall(),
             keras.metrics.TopKCategoricalAccuracy(k=3), keras.metrics.F1Score(average="macro"),
             keras.metrics.F1Score(name="f1_per_class"), keras.metrics.Recall(class_id=6, name="shirt_recall")],
)
assert [layer.count_params() for layer in model.layers] == [416, 0, 23050]  # 12 x 12 x 16 features
class_weight = {i: 1.0 for i in range(10)}
class_weight[6] = 2.0  # shirts are the hardest class: weigh them up
model.fit(x_train, y_train_1h, epochs=2, batch_size=32, class_weight=class_weight, verbose=0)
results = model.evaluate(x_test, y_test_1h, return_dict=True, verbose=0)
print(results)
assert set(results) == {"loss", "categorical_accuracy", "precision", "recall", "top_k_categorical_accuracy",
                        "f1_score", "f1_per_class", "shirt_recall"}
assert results["categorical_accuracy"] > 0.7 and results["top_k_categorical_accuracy"] > 0.9
assert 0 < results["recall"] <= results["precision"] <= 1
# F1 per class (10 values) and its macro average; the recall of one class
assert np.shape(results["f1_per_class"]) == (10,) and 0.5 < results["f1_score"] < 1
assert abs(float(np.mean(results["f1_per_class"])) - results["f1_score"]) < 1e-5
assert 0 <= results["shirt_recall"] <= 1
