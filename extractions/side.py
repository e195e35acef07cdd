"""SIDE: Surrogate condItional Data Extraction (Chen, Wang, Zou, Ma 2024, "Extracting Training Data
from Unconditional Diffusion Models", arXiv 2410.02467).

An unconditional model has no prompt to steer it toward one training image, but its OWN
generations contain that information: near-copies of one memorized image cluster together. SIDE
turns the clusters into a surrogate condition:

(a) generate a pool from the unconditional model;
(b) cluster the pool on SSCD embeddings into pseudo-classes: k-means with ``clusters`` classes, or
    with ``clusters=0`` one class per group of near-copies (average linkage at SSCD distance
    ``threshold``);
(c) train a time-dependent classifier p(y | x_t, t) on noised pool images with their cluster labels
    (the paper distils it from a time-independent one, TDKD; here it is trained on noised samples
    directly, the simpler route the paper's classifier-guidance view allows);
(d) sample with classifier guidance toward each cluster in turn (image i aims at the (i mod m)-th of
    the m clusters with at least ``min_cluster`` members):
    eps_hat = eps - scale * sqrt(1 - alpha_bar_t) * grad log p(y | x_t, t);
(e) the harness scores AMS/UMS against the training set.

Each stage is cached in the run store (``ctx.cached``) under the parameters it depends on, so a
rerun reuses them and a new guidance scale reuses the pool, clusters and classifier. The guided
images start from the same x_T as plain sampling's (``seed=ctx.seed``): a paired comparison.
Reduced sizes (a pool of 128) fit the bundled 32x32 model on a CPU; the paper's pools are far
larger. ``scale``'s default was chosen by a sweep on the bundled model (README), not taken from
the paper.
"""

from membench_eval.extraction_method import ExtractionMethod


class SIDE(ExtractionMethod):
    """Cluster the model's own samples, train a noisy classifier on the clusters, guide toward each."""

    name = "side"
    paper = "Chen et al. 2024, arXiv 2410.02467"
    sweep = {"scale": [3.0, 10.0, 20.0]}

    pool: int = 128
    clusters: int = 16
    threshold: float = 0.4
    min_cluster: int = 2
    classifier_steps: int = 200
    scale: float = 10.0

    def generate(self, pipe, ctx):
        import numpy as np
        import torch

        from membench_eval.extraction.classifier import (
            build_classifier, guidance, load_state_arrays, state_arrays, train_classifier)
        from membench_eval.extraction.clustering import cluster_embeddings, cluster_near_copies
        from membench_eval.extraction.sampling import to_uint8

        pool_seed = 1_000_000 + ctx.seed  # a noise stream of its own: the pool is not the scored images
        pool_fields = {"pool": self.pool, "pool_seed": pool_seed}
        pool = ctx.cached("pool", pool_fields,
                          lambda: {"images": to_uint8(ctx.sample(pipe, self.pool, seed=pool_seed))})["images"]
        emb = ctx.cached("pool_sscd", pool_fields, lambda: {"embeddings": ctx.embed(pool)})["embeddings"]
        cluster_fields = {**pool_fields, "clusters": self.clusters, "threshold": self.threshold}

        def cluster():
            if self.clusters > 0:
                return {"labels": cluster_embeddings(emb, self.clusters, seed=ctx.seed)}
            return {"labels": cluster_near_copies(emb, self.threshold)}

        labels = ctx.cached("clusters", cluster_fields, cluster)["labels"]
        n_classes = int(labels.max()) + 1
        x0 = torch.from_numpy(pool).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        y = torch.from_numpy(labels).long()

        def fit():
            model, acc = train_classifier(x0, y, pipe.scheduler_config, n_classes=n_classes,
                                          steps=self.classifier_steps, seed=ctx.seed)
            return {**state_arrays(model), **{f"meta_{k}": np.asarray(v) for k, v in acc.items()}}

        state = ctx.cached("classifier", {**cluster_fields, "classifier_steps": self.classifier_steps}, fit)
        classifier = load_state_arrays(build_classifier(n_classes, x0.shape[1]), state)
        sizes = np.bincount(labels, minlength=n_classes)
        aimed = [c for c in range(n_classes) if sizes[c] >= self.min_cluster] or list(range(n_classes))
        ctx.records.update({"cluster_sizes": sizes.tolist(), "targets": len(aimed),
                            **{k[5:]: round(float(v), 3) for k, v in state.items() if k.startswith("meta_")}})
        targets = torch.tensor(aimed)[torch.arange(ctx.n) % len(aimed)]
        return ctx.sample(pipe, ctx.n, seed=ctx.seed,
                          guide=guidance(classifier, targets, pipe.scheduler_config, self.scale))
