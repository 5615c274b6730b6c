"""The opt-in fast path of the model zoo (``fused=True``): feature-major forwards with fused kernels.

Each model's plain module (tracker/models/*.py) holds the parameters; the functions here run the same modules
faster on CPU and are tested equal to the plain path (tests/test_model_paths.py). Nothing here imports a model
module (the model modules import this package).
"""
