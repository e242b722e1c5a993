"""Data: reading labelled images, splitting them, batching them, normalising them.

One module per concept:

- :mod:`~npdl.data.decoding`: image files -> ``uint8 (H, W, 3)`` arrays; the decoding
  process pool.
- :mod:`~npdl.data.folders`: listing an ImageFolder directory ``root/<class>/<image>``.
- :mod:`~npdl.data.archives`: listing tar/zip archives of one, and the safety checks
  on their members.
- :mod:`~npdl.data.source_base`: the image-source contract, :class:`ImageSource` (a
  listing plus on-demand decoding), and :class:`ArrayImageSource` (decoded already).
- :mod:`~npdl.data.cifar`: the official CIFAR-10 python archive (restricted unpickler).
- :mod:`~npdl.data.sources`: :class:`FolderImageSource`, :class:`ArchiveImageSource`
  and :func:`open_image_source` over all of the above.
- :mod:`~npdl.data.download`: http(s) downloads with a checksum; the course's
  ``download_url`` (download, then unpack with :mod:`~npdl.data.unpacking`).
- :mod:`~npdl.data.splits`: stratified, reproducible train/val/test splits.
- :mod:`~npdl.data.dataset`: :class:`ImageFolderDataset`.
- :mod:`~npdl.data.memory_dataset`: the course's :class:`MemoryImageFolderDataset` and
  its ``cifar10.pckl``.
- :mod:`~npdl.data.loader`: :class:`DataLoader`.
- :mod:`~npdl.data.transform_base`: the transform contract (a batch or one image; plain
  callables per image).
- :mod:`~npdl.data.transforms`: batch-wise transforms, and the pipeline's transforms
  built from fitted statistics.
- :mod:`~npdl.data.normalization`: image statistics, standardisation and ZCA; the
  normalize stage's folder (``stats.json``, ``zca.npz``, ``pca_components.npy``,
  whitened splits).
- :mod:`~npdl.data.prepared`: the prepare-split stage's folder of decoded splits.
"""

from .archives import list_image_archive
from .cifar import Cifar10PythonSource, read_cifar10_python_archive, restricted_unpickle
from .dataset import ImageFolderDataset
from .decoding import IMAGE_EXTENSIONS, decode_image, decoding_pool
from .download import download, download_and_unpack, resolve_source
from .folders import list_image_folder
from .loader import DataLoader
from .memory_dataset import MemoryImageFolderDataset, read_memory_file
from .normalization import (
    Normalization,
    compute_image_mean_and_std,
    fit_standardization,
    fit_zca,
    load_normalization,
    read_normalization,
    standardize_images,
    whiten,
    write_normalization,
)
from .prepared import PreparedData, load_manifest, load_split, prepare_dataset, write_prepared
from .source_base import ArrayImageSource, ImageSource
from .sources import ArchiveImageSource, FolderImageSource, open_image_source
from .splits import DEFAULT_SPLIT, split_source_indices, stratified_split, stratified_subset
from .transform_base import BatchTransform, Transform, apply_to_batch, apply_to_one
from .transforms import (
    AsFloat,
    ComposeTransform,
    FlattenTransform,
    IdentityTransform,
    NormalizeTransform,
    RandomCrop,
    RandomFlipCrop,
    RandomHorizontalFlip,
    RescaleTransform,
    ZCATransform,
    eval_transform,
    prepared_transform,
    train_transform,
)

__all__ = [
    "DEFAULT_SPLIT",
    "IMAGE_EXTENSIONS",
    "ArchiveImageSource",
    "ArrayImageSource",
    "AsFloat",
    "BatchTransform",
    "Cifar10PythonSource",
    "ComposeTransform",
    "DataLoader",
    "FlattenTransform",
    "FolderImageSource",
    "IdentityTransform",
    "ImageFolderDataset",
    "ImageSource",
    "MemoryImageFolderDataset",
    "Normalization",
    "NormalizeTransform",
    "PreparedData",
    "RandomCrop",
    "RandomFlipCrop",
    "RandomHorizontalFlip",
    "RescaleTransform",
    "Transform",
    "ZCATransform",
    "apply_to_batch",
    "apply_to_one",
    "compute_image_mean_and_std",
    "decode_image",
    "decoding_pool",
    "download",
    "download_and_unpack",
    "eval_transform",
    "fit_standardization",
    "fit_zca",
    "list_image_archive",
    "list_image_folder",
    "load_manifest",
    "load_normalization",
    "load_split",
    "open_image_source",
    "prepare_dataset",
    "prepared_transform",
    "read_cifar10_python_archive",
    "read_memory_file",
    "read_normalization",
    "resolve_source",
    "restricted_unpickle",
    "split_source_indices",
    "standardize_images",
    "stratified_split",
    "stratified_subset",
    "train_transform",
    "whiten",
    "write_normalization",
    "write_prepared",
]
