"""MemBench's "reference performance": real web images for each trigger prompt, found with an image
search API and scored like a method's generations (:mod:`membench_eval.reference.image_search`)."""
