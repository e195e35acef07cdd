"""Re-export of ``membench_eval.models.sd14`` (SD 1.4's configs and random-weight builder), for the
bench scripts that import ``sd14_configs`` from this folder."""

from membench_eval.models.sd14 import TEXT_ENCODER, UNET, VAE, build_sd14_pipeline

__all__ = ["TEXT_ENCODER", "UNET", "VAE", "build_sd14_pipeline"]
