"""The course's API on npdl, point by point (issue #15), on tiny real image folders.

1. datasets (MemoryImageFolderDataset, download_url, float samples);
2. transforms on one image and per-image callables;
3. the course's search spaces;
4. classes where the course passes classes;
5. the model and optimizer names and attributes the course's code uses;
6. the documentation's "Course code" page (docs/course-code.md).
"""

import functools
import http.server
import math
import pickle
import random
import re
import threading
from pathlib import Path

import numpy as np
import pytest

import npdl
from npdl import (
    SGD,
    Adam,
    ClassificationNet,
    ComposeTransform,
    CrossEntropyFromLogits,
    DataLoader,
    FlattenTransform,
    ImageFolderDataset,
    MemoryImageFolderDataset,
    MyOwnNetwork,
    NormalizeTransform,
    RandomHorizontalFlip,
    Relu,
    RescaleTransform,
    SGDMomentum,
    Sigmoid,
    Solver,
    Transform,
    compute_image_mean_and_std,
    sgd_momentum,
)
from npdl.data import open_image_source
from npdl.data.download import KNOWN_MD5
from npdl.hyperparameter_tuning import (
    findBestConfig,
    grid_search,
    random_search,
    random_search_space,
)
from npdl.search import Choice, Interval

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def http_folder(tmp_path):
    """Serve ``tmp_path / 'served'`` on 127.0.0.1; yields (base URL, list of paths asked)."""
    served = tmp_path / "served"
    served.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):
            requests.append(self.path)

    handler = functools.partial(Handler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served, requests
    httpd.shutdown()
    httpd.server_close()


def write_memory_file(path, images, labels, classes, protocol=4):
    """The course's ``cifar10.pckl``: a pickled dict of the decoded images."""
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = {
        "images": images,
        "labels": [np.int64(label) for label in labels],
        "class_to_idx": {name: index for index, name in enumerate(classes)},
        "classes": list(classes),
    }
    path.write_bytes(pickle.dumps(saved, protocol=protocol))
    return path


def image_loader(folder, batch_size=10, **dataset_args):
    transform = ComposeTransform(
        [RescaleTransform(), NormalizeTransform([0.5] * 3, [0.25] * 3), FlattenTransform()]
    )
    dataset = ImageFolderDataset(folder.root, transform=transform, seed=0, **dataset_args)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, rng=0)


@pytest.fixture(scope="module")
def loaders(png_folder):
    return image_loader(png_folder, mode="train"), image_loader(png_folder, mode="val")


# ---------------------------------------------------------------- 1. datasets


def test_download_url_is_unpacked_into_a_missing_root_and_then_reused(
    http_folder, png_folder, image_files, tmp_path
):
    base, served, requests = http_folder
    image_files.pack_zip(png_folder.root, served / "cifar10.zip", top="cifar10")
    root = tmp_path / "datasets" / "cifar10"
    url = f"{base}/cifar10.zip"

    split = {"train": 0.6, "val": 0.2, "test": 0.2}
    dataset = ImageFolderDataset(root=root, mode="train", download_url=url, split=split)
    assert requests == ["/cifar10.zip"]
    assert sorted(p.name for p in root.iterdir()) == png_folder.classes  # wrapper folder dropped
    reference = ImageFolderDataset(png_folder.root, mode="train")
    np.testing.assert_array_equal(dataset.images, reference.images)
    assert not list(root.parent.glob(".*"))  # no temporary files or archive left

    ImageFolderDataset(root=root, mode="val", download_url=url)  # root holds data
    assert requests == ["/cifar10.zip"]
    ImageFolderDataset(root=root, mode="val", download_url=url, force_download=True)
    assert requests == ["/cifar10.zip"] * 2


def test_download_url_is_checked_against_a_known_checksum(
    http_folder, png_folder, image_files, tmp_path, monkeypatch
):
    base, served, _ = http_folder
    image_files.pack_zip(png_folder.root, served / "cifar10.zip")
    url = f"{base}/cifar10.zip"
    monkeypatch.setitem(KNOWN_MD5, url, "0" * 32)
    root = tmp_path / "cifar10"
    with pytest.raises(ValueError, match=r"checksum mismatch.*cifar10\.zip"):
        ImageFolderDataset(root=root, download_url=url)
    assert not root.exists()


def test_an_archive_climbing_out_of_root_is_refused(tmp_path):
    import zipfile

    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("cat/0.png", b"x")
        zipped.writestr("../escaped.txt", b"x")
    with pytest.raises(ValueError, match=r"'\.\./escaped\.txt'.*refusing"):
        ImageFolderDataset(root=tmp_path / "cifar10", download_url=archive.as_uri())
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "cifar10").exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_memory_dataset_reads_the_course_memory_file(png_folder, tmp_path, protocol):
    source = open_image_source(png_folder.root)  # the images in listing order
    write_memory_file(
        tmp_path / "cifar10memory" / "cifar10.pckl",
        source.read_images(),
        source.labels,
        source.classes,
        protocol,
    )
    for mode in ("train", "val", "test"):
        # The course appends "memory" to the root it is given.
        memory = MemoryImageFolderDataset(str(tmp_path / "cifar10"), mode=mode, seed=4)
        folder = ImageFolderDataset(png_folder.root, mode=mode, seed=4)
        assert memory.memory_root == tmp_path / "cifar10memory"
        assert isinstance(memory, ImageFolderDataset) and memory.classes == folder.classes
        np.testing.assert_array_equal(memory.images, folder.images)  # the same split
        np.testing.assert_array_equal(memory.labels, folder.labels)
    limited = MemoryImageFolderDataset(tmp_path / "cifar10memory", mode="train", limit_files=6)
    assert len(limited) == 6 and np.bincount(limited.labels).tolist() == [2, 2, 2]


def test_memory_dataset_refuses_a_pickle_that_runs_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "cifar10memory" / "cifar10.pckl"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps({"images": Exploit()}))
    with pytest.raises(pickle.UnpicklingError, match=r"forbidden global builtins\.print"):
        MemoryImageFolderDataset(tmp_path / "cifar10")


def test_memory_dataset_falls_back_to_the_image_folder(png_folder, tmp_path):
    memory = MemoryImageFolderDataset(png_folder.root, mode="test", seed=0)
    folder = ImageFolderDataset(png_folder.root, mode="test", seed=0)
    np.testing.assert_array_equal(memory.images, folder.images)
    with pytest.raises(FileNotFoundError, match=r"cifar10memory.*download_url"):
        MemoryImageFolderDataset(tmp_path / "missing" / "cifar10")


def test_memory_dataset_downloads_the_course_memory_archive(http_folder, png_folder, tmp_path):
    import zipfile

    base, served, requests = http_folder
    source = ImageFolderDataset(png_folder.root, split={"train": 1.0})
    pckl = tmp_path / "made" / "cifar10.pckl"
    write_memory_file(pckl, source.images, source.labels, source.classes)
    with zipfile.ZipFile(served / "cifar10memory.zip", "w") as zipped:
        zipped.write(pckl, "cifar10.pckl")
    memory = MemoryImageFolderDataset(
        root=str(tmp_path / "datasets" / "cifar10"),
        download_url=f"{base}/cifar10memory.zip",
        mode="train",
        split={"train": 1.0},
    )
    assert (tmp_path / "datasets" / "cifar10memory" / "cifar10.pckl").is_file()
    assert sorted(map(bytes, memory.images)) == sorted(map(bytes, source.images))
    assert requests == ["/cifar10memory.zip"]


def test_an_untransformed_sample_is_a_writable_float_copy(png_folder):
    dataset = ImageFolderDataset(png_folder.root, mode="train", seed=0)
    image = dataset[1]["image"]
    assert image.shape == (32, 32, 3) and image.dtype == np.float64
    np.testing.assert_array_equal(image, dataset.images[1])
    image /= 255.0  # the course's in-place rescaling
    assert dataset.images.dtype == np.uint8 and not dataset.images.flags.writeable
    np.testing.assert_array_equal(dataset[1]["image"], dataset.images[1])
    batch = next(iter(image_loader(png_folder, mode="train")))
    assert batch["image"].shape == (10, 3072) and batch["image"].dtype == np.float32


# -------------------------------------------------------------- 2. transforms


def test_transforms_take_one_image_as_the_course_does(png_folder):
    images = ImageFolderDataset(png_folder.root, mode="train").images
    image = images[0]
    assert FlattenTransform()(image).shape == (3072,)
    np.testing.assert_array_equal(FlattenTransform()(image), image.ravel())
    rescaled = RescaleTransform(range_=(-1, 1), old_range=(0, 255))(image)
    assert rescaled.shape == (32, 32, 3)
    np.testing.assert_allclose(rescaled, image / 127.5 - 1, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(RandomHorizontalFlip(prob=1.0)(image), image[:, ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(1)(image.astype(float)), image[:, ::-1])
    assert RandomHorizontalFlip(prob=0.3).p == RandomHorizontalFlip(prob=0.3).prob == 0.3
    compose = ComposeTransform(
        [RescaleTransform(), NormalizeTransform([0.5] * 3, [0.25] * 3), FlattenTransform()]
    )
    np.testing.assert_array_equal(compose(image), compose(images)[0])  # one image = its row
    assert compose(images).shape == (len(images), 3072)


def test_a_plain_callable_gets_one_image_at_a_time(png_folder):
    seen = []

    def mirror(image):  # written for one (H, W, C) image: axis 1 is the width
        seen.append((image.shape, image.dtype))
        image /= 255.0  # in place, as course code may do
        return image[:, ::-1]

    transform = ComposeTransform([mirror, FlattenTransform()])
    dataset = ImageFolderDataset(png_folder.root, mode="train", transform=transform, seed=0)
    batch = dataset.get_batch([0, 1, 2, 3])
    assert seen == [((32, 32, 3), np.float64)] * 4
    expected = RandomHorizontalFlip(p=1.0)(dataset.images[[0, 1, 2, 3]]) / 255.0
    np.testing.assert_allclose(batch["image"], expected.reshape(4, -1))
    sample = ImageFolderDataset(png_folder.root, mode="train", transform=mirror, seed=0)[2]
    np.testing.assert_allclose(sample["image"], dataset.images[2][:, ::-1] / 255.0)
    assert dataset.images.flags.writeable is False  # the stored images were never touched


class CountingTransform(Transform):
    """An npdl transform that counts how it is called."""

    def __init__(self):
        self.batches, self.ones = [], 0

    def apply_batch(self, images):
        self.batches.append(len(images))
        return images

    def apply_one(self, image):
        self.ones += 1
        return image


def test_npdl_transforms_run_once_per_batch_on_the_loader_path(png_folder):
    counting = CountingTransform()
    transform = ComposeTransform([RandomHorizontalFlip(rng=0), counting, RescaleTransform()])
    dataset = ImageFolderDataset(png_folder.root, mode="train", transform=transform, seed=0)
    batches = list(DataLoader(dataset, batch_size=8))
    assert counting.batches == [8, 8, 2] and counting.ones == 0
    assert all(batch["image"].dtype == np.float32 for batch in batches)


# ---------------------------------------------------------------- 3. searches


def test_bounds_in_either_order_and_single_values(loaders):
    space = random_search_space(
        {
            "learning_rate": ([1e-2, 1e-6], "log"),
            "hidden_size": ([12, 4], "int"),
            "reg": ([1e-3], "float"),
            "std": ([1e-3], "log"),
            "num_layer": ([2], "int"),
        }
    )
    assert space["learning_rate"] == Interval(1e-6, 1e-2, log=True)
    assert space["hidden_size"] == Interval(4, 12, integer=True)
    assert space["reg"] == space["std"] == Choice((1e-3,)) and space["num_layer"] == Choice((2,))
    for rng in (None, 0):
        _, results = random_search(
            *loaders,
            {
                "learning_rate": ([1e-2, 1e-6], "log"),
                "hidden_size": ([8, 4], "int"),
                "reg": ([1e-4], "log"),
                "verbose": ([False], "item"),
            },
            num_search=2,
            epochs=1,
            patience=1,
            rng=rng,
        )
        for config, _ in results:
            assert 1e-6 <= config["learning_rate"] <= 1e-2 and 4 <= config["hidden_size"] <= 8
            assert config["reg"] == 1e-4  # that value, not 10 ** log10(1e-4)


def course_draws(spaces, count):
    """The course's own sampling, written from its description: Python's random module."""
    configs = []
    for _ in range(count):
        config = {}
        for key, (values, mode) in spaces.items():
            if mode == "log":
                config[key] = 10 ** random.uniform(math.log10(values[0]), math.log10(values[-1]))
            elif mode == "int":
                config[key] = random.randint(values[0], values[-1])
            elif mode == "float":
                config[key] = random.uniform(values[0], values[-1])
            else:
                config[key] = random.choice(values)
        configs.append(config)
    return configs


def test_random_seed_makes_an_unseeded_search_repeat_the_course_configs(loaders):
    spaces = {
        "learning_rate": ([1e-2, 1e-4], "log"),
        "hidden_size": ([4, 8], "int"),
        "activation": ([Sigmoid(), Relu()], "item"),
        "verbose": ([False], "item"),
    }
    runs = []
    for _ in range(2):
        random.seed(7)
        best_model, results = random_search(*loaders, spaces, num_search=3, epochs=1, patience=1)
        runs.append([config for config, _ in results])
    assert runs[0] == runs[1]
    random.seed(7)
    assert runs[0] == course_draws(spaces, 3)
    assert isinstance(best_model, ClassificationNet)


def test_grid_values_may_repeat_and_the_return_value_is_the_courses(loaders):
    grid = {"learning_rate": [1e-3, 1e-3], "hidden_size": [4], "verbose": [False]}
    outcome = grid_search(*loaders, grid, epochs=1, patience=1)
    assert isinstance(outcome, tuple) and len(outcome) == 2
    _, results = outcome
    assert [config["learning_rate"] for config, _ in results] == [1e-3, 1e-3]
    assert all({"val_loss", "train_loss"} <= set(stats) for _, stats in results)
    again = findBestConfig(*loaders, [c for c, _ in results], 1, 1, ClassificationNet)
    assert len(again) == 2 and len(again[1]) == 2


# ------------------------------------------------------ 4. classes as instances


def test_classes_are_taken_where_the_course_passes_classes(loaders):
    assert isinstance(ClassificationNet(activation=Relu).activation, Relu)
    model = ClassificationNet(activation=Relu, hidden_size=4)
    solver = Solver(model, *loaders, loss_func=CrossEntropyFromLogits, verbose=False)
    assert isinstance(solver.loss_func, CrossEntropyFromLogits)
    solver.train(epochs=2)
    assert len(solver.train_loss_history) == 2
    random.seed(0)
    _, results = random_search(
        *loaders,
        {
            "learning_rate": ([1e-3], "log"),
            "loss_func": ([CrossEntropyFromLogits], "item"),
            "activation": ([Relu, Sigmoid], "item"),
            "hidden_size": ([4], "int"),
            "verbose": ([False], "item"),
        },
        num_search=2,
        epochs=1,
        patience=1,
    )
    assert all(math.isfinite(stats["val_loss"]) for _, stats in results)


# -------------------------------------------------- 5. model and optimizer API


#: Every name the course's exercise-6 notebooks import from its packages.
COURSE_NAMES = {
    "exercise_code.data": [
        "DataLoader",
        "ImageFolderDataset",
        "MemoryImageFolderDataset",
        "RescaleTransform",
        "NormalizeTransform",
        "FlattenTransform",
        "ComposeTransform",
        "IdentityTransform",
        "RandomHorizontalFlip",
        "compute_image_mean_and_std",
    ],
    "exercise_code.networks": [
        "ClassificationNet",
        "MyOwnNetwork",
        "BCE",
        "CrossEntropyFromLogits",
        "Sigmoid",
        "Relu",
        "LeakyRelu",
        "Tanh",
        "SGD",
        "Adam",
        "sgd_momentum",
        "affine_forward",
        "affine_backward",
    ],
    "exercise_code.solver": ["Solver"],
    "exercise_code.hyperparameter_tuning": ["grid_search", "random_search", "findBestConfig"],
}


@pytest.mark.parametrize("module", sorted(COURSE_NAMES))
def test_every_name_a_notebook_imports_exists(module):
    assert [name for name in COURSE_NAMES[module] if not hasattr(npdl, name)] == []
    if module == "exercise_code.hyperparameter_tuning":
        for name in COURSE_NAMES[module]:
            assert hasattr(npdl.hyperparameter_tuning, name)


def test_model_call_gradient_reset_and_optimizer_backward(loaders):
    batch = next(iter(loaders[0]))
    model = ClassificationNet(hidden_size=6, rng=0)
    np.testing.assert_array_equal(model(batch["image"]), model.forward(batch["image"]))
    assert model.num_operation == len(batch["image"]) * (3072 * 6 + 6 * 10)
    loss = CrossEntropyFromLogits()
    optimizer = SGD(model, loss, learning_rate=1e-2)
    logits = model.forward(batch["image"])
    optimizer.backward(logits, batch["label"])
    expected = ClassificationNet(hidden_size=6, rng=0)
    expected.forward(batch["image"])
    expected.backward(loss.backward(logits, batch["label"]))
    for name in model.grads:
        np.testing.assert_allclose(model.grads[name], expected.grads[name])
        model.grads[name] = 0.0  # how the course's optimizers reset a gradient
        assert not model.grads[name].any() and model.grads[name].shape == model.params[name].shape
    assert sgd_momentum is SGDMomentum
    assert sgd_momentum(model, loss, 1e-2, optim_config={"momentum": 0.5}).momentum == 0.5
    assert Adam(model, loss, optim_config={"beta1": 0.8}).beta1 == 0.8
    with pytest.raises(ValueError, match=r"optim_config has unknown keys \['moment'\]"):
        sgd_momentum(model, loss, optim_config={"moment": 0.5})


class CourseStyleSolver:
    """A training loop written from the course's Solver: what it calls on the model and
    the optimizer, nothing of npdl's own."""

    def __init__(self, model, train_loader, loss_func, learning_rate, optimizer):
        self.model, self.train_loader, self.loss_func = model, train_loader, loss_func
        self.opt = optimizer(model, loss_func, learning_rate)
        self.num_operation, self.train_loss_history = 0, []
        self.best_params = None

    def train(self, epochs):
        for _ in range(epochs):
            losses = []
            for batch in self.train_loader:
                X, y = batch["image"], batch["label"]
                y_pred = self.model.forward(X)
                loss = self.loss_func.forward(y_pred, y) + sum(self.model.reg.values())
                self.num_operation += self.model.num_operation
                self.opt.backward(y_pred, y)
                self.opt.step()
                self.num_operation += self.model.num_operation
                losses.append(loss)
            self.train_loss_history.append(np.mean(losses))
            self.best_params = self.model.params
        self.model.params = self.best_params


class CourseStyleSGD:
    """The course's SGD contract: replace each parameter, then reset its gradient."""

    def __init__(self, model, loss_func, learning_rate=1e-4):
        self.model, self.loss_func, self.lr = model, loss_func, learning_rate

    def backward(self, y_pred, y_true):
        self.model.backward(self.loss_func.backward(y_pred, y_true))

    def step(self):
        for name in self.model.grads:
            self.model.params[name] = self.model.params[name] - self.lr * self.model.grads[name]
            self.model.grads[name] = 0.0


@pytest.mark.parametrize("optimizer", [Adam, sgd_momentum, CourseStyleSGD])
def test_the_course_solver_drives_an_npdl_network(loaders, optimizer):
    model = ClassificationNet(activation=Relu(), hidden_size=16, reg=1e-4, init="he", rng=0)
    solver = CourseStyleSolver(model, loaders[0], CrossEntropyFromLogits(), 1e-2, optimizer)
    solver.train(epochs=8)
    assert solver.train_loss_history[-1] < 0.8 * solver.train_loss_history[0]
    assert solver.num_operation == 2 * 8 * 18 * (3072 * 16 + 16 * 10)


def test_my_own_network_is_a_classification_net_to_override(loaders):
    class Wider(MyOwnNetwork):
        def __init__(self, activation=Relu, hidden_size=8, **kwargs):
            super().__init__(activation=activation, hidden_size=hidden_size, **kwargs)

        def forward(self, X):
            self.forwards = getattr(self, "forwards", 0) + 1
            return super().forward(X)

    assert isinstance(MyOwnNetwork(), ClassificationNet)
    model = Wider(rng=0)
    solver = Solver(model, *loaders, verbose=False)
    solver.train(epochs=2)
    assert model.forwards > 2 and model.params["W1"].shape == (3072, 8)


def test_image_statistics_are_in_the_scale_of_the_array(png_folder):
    images = ImageFolderDataset(png_folder.root, mode="train").images
    mean, std = compute_image_mean_and_std(images)
    assert mean.min() > 50 and mean.max() < 220  # pixel values, as the course returns
    np.testing.assert_allclose(compute_image_mean_and_std(images / 255.0)[0], mean / 255)
    np.testing.assert_allclose(compute_image_mean_and_std(images, scale=1 / 255)[1], std / 255)


# ------------------------------------------------------------------ 6. the docs' page


def test_the_course_code_page_lists_imports_that_work_and_the_differences():
    page = (ROOT / "docs" / "course-code.md").read_text()
    section = page.split("## Running a course notebook", 1)[1]
    mappings = re.findall(r"^from (exercise_code[\w.]*) import .* -> (from npdl.*)$", section, re.M)
    course_modules = {module for module, _ in mappings}
    assert {
        "exercise_code.data",
        "exercise_code.networks",
        "exercise_code.solver",
        "exercise_code.hyperparameter_tuning",
    } <= course_modules
    for _, npdl_import in mappings:
        exec(npdl_import, {})  # each replacement line imports
    for difference in (".npz", "best epoch", "unknown keyword"):
        assert difference in section
