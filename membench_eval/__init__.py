"""membench-eval: does a memorization mitigation for text-to-image diffusion really work?"""

from membench_eval.bundle import point_paths_here
from membench_eval.detector import DetectionContext, DetectionRequest, Detector
from membench_eval.mitigation import BatchContext, ImageRequest, Mitigation

__all__ = ["Mitigation", "BatchContext", "ImageRequest", "Detector", "DetectionContext", "DetectionRequest"]
__version__ = "0.1.0"

point_paths_here()  # an installed wheel: the benchmark data inside the package (membench_eval.bundle)
