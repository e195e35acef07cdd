"""Plain sampling: the unconditional model sampled as it is (DDIM, eta 0), the baseline that
SIDE (Chen et al. 2024, arXiv 2410.02467) and every other extraction attack is compared with at
an equal number of generated images."""

from membench_eval.extraction_method import ExtractionMethod


class Plain(ExtractionMethod):
    """N images from N seeded x_T, no condition, no guidance."""

    name = "plain"
    paper = "baseline of Chen et al. 2024 (arXiv 2410.02467)"

    def generate(self, pipe, ctx):
        return ctx.sample(pipe, ctx.n, seed=ctx.seed)
