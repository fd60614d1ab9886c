"""Data sets as in-memory tensors: MNIST, Fashion-MNIST, CIFAR-10, digits, synthetic, the user's own.

Images are kept as uint8 (N, C, H, W) and scaled to [0, 1] per batch; the network's own input
quantizer puts them on the 8-bit grid. `load_data(name, ...)` returns a `DataBundle`. `data_dir` may
point at a read-only folder in torchvision's layout (e.g. `../shared/data` with `MNIST/raw/*.gz`);
what must be extracted goes into a writable cache, and every extracted file carries a record of the
archive it came from, so a changed archive is extracted again. Nothing read from a data file is ever
executed: CIFAR-10's pickled batches go through a restricted unpickler. Bad data (missing, truncated,
malformed, foreign) is a one-line `DataError` (exit 3) naming the file and the fix.

Modules, bottom up:
- `dataset`: `Dataset` (one split) and `DataBundle` (what a build uses);
- `cache`: the cache folder, files written beside their target and renamed, `SourceRecord`s;
- `safe_pickle`: the restricted unpickler for CIFAR-10 batches;
- `mnist`: torchvision's IDX layout (MNIST, Fashion-MNIST), parsed and checked here;
- `cifar`: torchvision's CIFAR-10 python layout, folder or archive, md5-checked;
- `synthetic`: scikit-learn digits and generated class prototypes (no files; tests use them);
- `arrays`, `npz`, `folder`: the user's own data, an `.npz` of arrays or an ImageFolder-style folder;
- `split`: the validation split carved from the training data (`DataBundle.val`);
- `loader`: `load_data`, the one entry point.
"""

from flows.data.cache import default_cache_dir, file_md5
from flows.data.cifar import (
    CIFAR_ARCHIVE,
    CIFAR_FOLDER,
    SKIP_MD5_ENV,
    load_cifar10,
    md5_check_enabled,
    read_cifar_batch,
)
from flows.data.dataset import DataBundle, Dataset
from flows.data.folder import load_image_folder
from flows.data.loader import DATASET_NAMES, is_dataset_path, load_data
from flows.data.npz import NPZ_ARRAYS, load_npz
from flows.data.split import split_validation
from flows.data.synthetic import load_digits_dataset, make_synthetic

__all__ = [
    "CIFAR_ARCHIVE",
    "CIFAR_FOLDER",
    "DATASET_NAMES",
    "NPZ_ARRAYS",
    "SKIP_MD5_ENV",
    "DataBundle",
    "Dataset",
    "default_cache_dir",
    "file_md5",
    "is_dataset_path",
    "load_cifar10",
    "load_data",
    "load_digits_dataset",
    "load_image_folder",
    "load_npz",
    "make_synthetic",
    "md5_check_enabled",
    "read_cifar_batch",
    "split_validation",
]
