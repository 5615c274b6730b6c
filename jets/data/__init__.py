"""Jet data: sources (:mod:`jets.data.generated` for the shipped Pythia 8 sample, :mod:`jets.data.toptag` for the
Top Quark Tagging Reference Dataset), the cached train/val/test splits (:mod:`jets.data.dataset`) and Lorentz
transformations (:mod:`jets.data.transforms`). Submodules are imported where used, so this package stays light.
"""
