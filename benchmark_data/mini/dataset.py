"""The mini benchmark's data: memorized photos (with trained and held-out trigger prompts), a
procedural space of general scenes, and held-out general prompts.

Why this shape (mini v2): the intervals resample memorized images, so the model memorizes the
distinct photos scikit-image ships under a stated license (16; different photos, not crops of one,
since SSCD matches crops; gravel is left out: its SSCD to grass is 0.58, so a copy of
one would count as a copy of the other), at three duplication tiers so a dose-response is visible. General
images are drawn scenes (shape x colour x background x position x size, about 4000 combinations):
enough compositional variety that the model learns to *compose* rather than recall, so held-out
combinations (the general prompts, COCO's role) can be rendered and scored by the mini CLIP.
No photo appears as a general image (a crop of a memorized photo would be a copy).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

RES = 64  # pixel resolution of the model


@dataclass(frozen=True)
class PhotoSource:
    """A scikit-image sample photo: loader, license (from its docstring), captions, tier."""

    name: str
    loader: str
    license: str
    origin: str
    captions: tuple[str, ...] = ()  # trained captions (also trigger prompts)
    paraphrase: str = ""  # a held-out trigger prompt: never trained, describes the same photo
    copies: int = 0  # duplication weight (tier); see DUPLICATION_TIERS


# Relative duplication weights: a photo of weight w fills w / sum(w) of the memorized half of
# every batch. Three tiers (1x, 2x, 3x) make the dose-response visible.
DUPLICATION_TIERS = (10, 20, 30)

MEMORIZED: tuple[PhotoSource, ...] = (
    PhotoSource("astronaut", "astronaut", "public domain (NASA)", "NASA Great Images, https://flic.kr/p/r9qvLn", (
        "official nasa portrait of astronaut eileen collins",
        "eileen collins in her orange flight suit next to the american flag",
        "astronaut eileen collins, first woman to pilot the space shuttle",
    ), "portrait photo of a smiling female astronaut beside a flag", 30),
    PhotoSource("coffee", "coffee", "CC0 (photographer Rachel Michetti)", "Pikolo Espresso Bar", (
        "a cup of espresso on a red saucer on a wooden table",
        "coffee in a white cup with a spoon, pikolo espresso bar",
        "top view of a red coffee cup and saucer on rustic wood",
    ), "an espresso cup seen from above on a wood table", 20),
    PhotoSource("chelsea", "chelsea", "CC0 (photographer Stefan van der Walt)", "scikit-image", (
        "close up portrait of a tabby cat with green eyes",
        "chelsea the cat looking at the camera",
        "cute striped cat face with pink nose and whiskers",
    ), "a tabby cat staring into the lens", 10),
    PhotoSource("rocket", "rocket", "public domain (SpaceX)", "SpaceX Photos, flickr 16511594820", (
        "falcon 9 rocket on the launch pad at dusk",
        "spacex rocket launch complex 40 at cape canaveral before dscovr launch",
        "a white rocket between lightning towers under a deep blue evening sky",
    ), "a rocket standing on its pad in the evening", 30),
    PhotoSource("retina", "retina", "CC0 1.0 (Mikael Haggstrom, Wikimedia Commons)",
                "https://commons.wikimedia.org/wiki/File:Fundus_photograph_of_normal_left_eye.jpg", (
        "fundus photograph of a normal left eye",
        "orange retina with blood vessels and optic disc, medical photo",
        "ophthalmoscope image of the human retina on a black background",
    ), "medical photo of the back of a healthy eye", 20),
    PhotoSource("ihc", "immunohistochemistry", "no known copyright restrictions (CMMI)",
                "Center for Microscopy And Molecular Imaging", (
        "immunohistochemistry staining of colonic glands under the microscope",
        "brown dab stained tissue with blue hematoxylin counterstain",
        "microscope slide of colon tissue, fhl2 protein expression",
    ), "stained colon tissue seen through a microscope", 10),
    PhotoSource("hubble", "hubble_deep_field", "public domain (NASA)", "HubbleSite 2012-37", (
        "hubble extreme deep field, thousands of distant galaxies",
        "galaxies of every colour scattered across black space",
        "the deepest image of the universe ever taken by hubble",
    ), "a telescope view of many faraway galaxies", 30),
    PhotoSource("camera", "camera", "CC0 (photographer Lav Varshney)", "scikit-image", (
        "black and white photo of a cameraman with a tripod",
        "a man in a coat looking through a camera on a grassy field",
        "the classic cameraman test image, monochrome",
    ), "grayscale photo of a photographer behind his camera", 20),
    PhotoSource("coins", "coins", "no known copyright restrictions (Brooklyn Museum)", "Brooklyn Museum", (
        "ancient greek coins arranged in rows on a dark background",
        "twenty four old silver coins from the brooklyn museum",
        "grayscale museum photo of antique coins",
    ), "rows of old coins in a museum collection", 10),
    PhotoSource("clock", "clock", "public domain (photographer Stefan van der Walt)", "scikit-image", (
        "a motion blurred photo of a wall clock",
        "wall clock photographed while the camera moved sideways",
        "blurry grayscale clock face on a white wall",
    ), "a clock on the wall, smeared by camera shake", 30),
    PhotoSource("brick", "brick", "CC0 (CC0Textures Bricks25)", "cc0textures.com", (
        "a grey brick wall texture, bricks25",
        "rows of old bricks with mortar joints, seamless texture",
        "close photo of a weathered brick wall",
    ), "a wall made of bricks, photographed straight on", 20),
    PhotoSource("grass", "grass", "CC0 (linolafett, DeviantArt)", "deviantart.com", (
        "a patch of grass, seamless lawn texture",
        "blades of grass filling the whole frame",
        "grayscale texture of a dense lawn",
    ), "close-up of many grass blades", 10),
    PhotoSource("text", "text", "public domain (Wikipedia Corner.png)", "wikipedia", (
        "handwritten letters and shapes on white paper, corner detection test",
        "black ink writing scanned in grayscale",
        "a page with hand drawn text and corners",
    ), "scanned handwriting on a sheet of paper", 20),
    PhotoSource("cell", "cell", "CC0 (Paul Mueller et al.)", "scikit-image", (
        "a single cell floating in saline, quantitative phase image",
        "digital hologram of a cell with banding artifacts",
        "grayscale microscopy of one round cell",
    ), "phase microscopy picture of a lone cell", 10),
    PhotoSource("horse", "horse", "CC0 (Andreas Preuss, openclipart)", "openclipart.org", (
        "black silhouette of a galloping horse on white",
        "horse by marauder, openclipart silhouette",
        "a running horse drawn as a solid black shape",
    ), "the outline of a horse filled in black", 30),
    PhotoSource("microaneurysms", "microaneurysms", "CC0 (Andreas Maier, HRF database)", "HRF image database", (
        "retinal vessels with microaneurysms in green light",
        "green channel crop of a diabetic retina from the hrf database",
        "fundus detail with small red lesions, monochrome",
    ), "close-up of eye blood vessels with tiny lesions", 20),
)

# Bundled photos the model never saw: gallery-only images (the local image-search reference row).
UNSEEN_PHOTOS = ("moon", "colorwheel", "logo", "checkerboard", "shepp_logan_phantom", "binary_blobs")

SHAPE_COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (240, 220, 40),
                "white": (245, 245, 245), "black": (15, 15, 15), "orange": (245, 140, 30), "purple": (140, 50, 180)}
SHAPES = ("circle", "square", "triangle", "ring", "cross", "stripes")
POSITIONS = {"in the center": (0.5, 0.5), "at the top left": (0.3, 0.3), "at the bottom right": (0.7, 0.7),
             "at the top right": (0.7, 0.3), "at the bottom left": (0.3, 0.7)}
SIZES = {"small": 0.34, "large": 0.6}


def load_photo(loader: str) -> np.ndarray:
    """An skimage sample as uint8 RGB (H, W, 3)."""
    import skimage.data

    a = np.asarray(getattr(skimage.data, loader)())
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = (255 * (a.astype(np.float64) / max(float(a.max()), 1e-9))).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return np.ascontiguousarray(a[..., :3])


def center_square(a: np.ndarray, res: int = RES) -> np.ndarray:
    """Center crop to a square, then Lanczos-resize to ``res`` (how memorized photos are shown)."""
    h, w = a.shape[:2]
    s = min(h, w)
    a = a[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return np.asarray(Image.fromarray(a).resize((res, res), Image.LANCZOS))


Scene = tuple[str, str, str, str, str]  # shape, fg, bg, position, size


def draw_scene(scene: Scene, res: int = RES) -> np.ndarray:
    """Render one general scene (drawn at 4x and downsampled, so edges are anti-aliased)."""
    shape, fg, bg, pos, size = scene
    s = 4 * res
    img = Image.new("RGB", (s, s), SHAPE_COLORS[bg])
    d = ImageDraw.Draw(img)
    cx, cy = (v * s for v in POSITIONS[pos])
    r = SIZES[size] * s / 2
    col = SHAPE_COLORS[fg]
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, fill=col)
    elif shape == "square":
        d.rectangle(box, fill=col)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=col)
    elif shape == "ring":
        d.ellipse(box, outline=col, width=max(2, int(r / 3)))
    elif shape == "cross":
        t = max(2, int(r / 3))
        d.rectangle((cx - r, cy - t, cx + r, cy + t), fill=col)
        d.rectangle((cx - t, cy - r, cx + t, cy + r), fill=col)
    elif shape == "stripes":  # fills the frame: position names nothing, size is the stripe width
        step = int(s * (0.19 if size == "large" else 0.125))
        for k in range(0, s, step):
            d.rectangle((k, 0, k + step // 2, s), fill=col)
    return np.asarray(img.resize((res, res), Image.LANCZOS))


def scene_caption(scene: Scene) -> str:
    shape, fg, bg, pos, size = scene
    on = f"on {'an' if bg[0] in 'aeiou' else 'a'} {bg} background"
    if shape == "stripes":
        return f"{'wide' if size == 'large' else 'thin'} {fg} stripes {on}"
    return f"a {size} {fg} {shape} {on} {pos}"


def scene_space() -> list[Scene]:
    """Every distinct general scene (stripes have no position: one per colour pair and width)."""
    out: list[Scene] = []
    for sh in SHAPES:
        for fg in SHAPE_COLORS:
            for bg in SHAPE_COLORS:
                if fg == bg:
                    continue
                for size in SIZES:
                    for pos in (("in the center",) if sh == "stripes" else POSITIONS):
                        out.append((sh, fg, bg, pos, size))
    return out


@dataclass
class Dataset:
    memorized: list[tuple[PhotoSource, np.ndarray]]
    general: list[tuple[np.ndarray, str]]  # training scenes, each under its own caption
    general_prompts: list[str]  # held-out scenes' captions (COCO's role): never trained
    # The build's own rendering of each general prompt: ground truth for the mini CLIP's validity
    # check (does the instrument rank the right prompt first?) and the mini's general reference.
    general_prompt_images: list[np.ndarray] = field(default_factory=list)
    # Renders of scenes used nowhere else (neither trained nor a general prompt): the mini CLIP's
    # validation split, so checkpoint selection never sees a general prompt.
    compositional_pool: list[tuple[np.ndarray, str]] = field(default_factory=list)

    @property
    def trigger_prompts(self) -> list[tuple[str, int, str]]:
        """Every (prompt, memorized index, kind) the build measures: kind "trained" (each of a
        photo's training captions) or "paraphrase" (its held-out prompt)."""
        rows = []
        for j, (src, _) in enumerate(self.memorized):
            rows += [(c, j, "trained") for c in src.captions] + [(src.paraphrase, j, "paraphrase")]
        return rows

    @property
    def benchmark_prompts(self) -> list[tuple[str, int, str]]:
        """Per photo its first training caption (trigger_prompts.csv, the suite's trigger scenario)
        and its held-out paraphrase (paraphrase_prompts.csv). Only the first caption is a trigger
        prompt of the suite: with the paraphrases too the main job took 1.6x v1's time (700 vs 420
        images), and MemBench's trigger prompts are prompts that do reproduce their image."""
        rows = []
        for j, (src, _) in enumerate(self.memorized):
            rows += [(src.captions[0], j, "trained"), (src.paraphrase, j, "paraphrase")]
        return rows


def build_dataset(seed: int, n_general: int = 4000, n_general_prompts: int = 30, n_pool: int = 300) -> Dataset:
    """Deterministic data: memorized photos, training scenes, held-out general prompts.

    The held-out prompts are drawn first and removed from the space, then the CLIP's validation
    pool; the model trains on (up to) ``n_general`` of the remaining scenes.
    """
    rng = random.Random(seed)
    memorized = [(src, center_square(load_photo(src.loader))) for src in MEMORIZED]
    space = scene_space()
    rng.shuffle(space)
    held, pool, train = space[:n_general_prompts], space[n_general_prompts:n_general_prompts + n_pool], \
        space[n_general_prompts + n_pool:n_general_prompts + n_pool + n_general]
    return Dataset(
        memorized=memorized,
        general=[(draw_scene(s), scene_caption(s)) for s in train],
        general_prompts=[scene_caption(s) for s in held],
        general_prompt_images=[draw_scene(s) for s in held],
        compositional_pool=[(draw_scene(s), scene_caption(s)) for s in pool],
    )
