"""Images, patches, measurement pairs and checked splits."""
from .examples import example_pair
from .images import Image, channel_mode, read_image, rgb_to_y, to_tensor
from .measurements import PIXEL_PROTOCOLS, check_protocol, prepare
from .patches import CODES, CodeDataset, PatchDataset, code_probability, dihedral
from .sources import (BENCHMARK_SETS, benchmark_path, benchmark_root, embedded_mri, embedded_photos,
                      folder_images, load_images)
from .splits import check_disjoint, fingerprint, split

__all__ = ["example_pair", "Image", "channel_mode", "PIXEL_PROTOCOLS", "check_protocol", "prepare", "read_image", "rgb_to_y", "to_tensor", "PatchDataset", "dihedral",
           "CODES", "CodeDataset", "code_probability", "BENCHMARK_SETS",
           "benchmark_path", "benchmark_root", "embedded_mri", "embedded_photos", "folder_images",
           "load_images", "check_disjoint", "fingerprint", "split"]
