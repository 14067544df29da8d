"""Images, patches, measurement pairs and checked splits."""
from .examples import example_pair, image_shape_for
from .images import Image, read_image, rgb_to_y, to_tensor
from .patches import CODES, CodeDataset, PatchDataset, code_probability, dihedral
from .sources import (BENCHMARK_SETS, benchmark_path, benchmark_root, embedded_mri, embedded_photos,
                      folder_images, load_images)
from .splits import check_disjoint, fingerprint, split

__all__ = ["example_pair", "image_shape_for", "Image", "read_image", "rgb_to_y", "to_tensor", "PatchDataset", "dihedral",
           "CODES", "CodeDataset", "code_probability", "BENCHMARK_SETS",
           "benchmark_path", "benchmark_root", "embedded_mri", "embedded_photos", "folder_images",
           "load_images", "check_disjoint", "fingerprint", "split"]
