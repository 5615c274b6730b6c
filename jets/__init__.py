"""Top-quark jet tagging under the Lorentz group: the second task of equitrack (seed 002).

``jets.data`` reads the Top Quark Tagging Reference Dataset and the shipped generated sample, ``jets.models``
holds the taggers (one file each, a registry), ``jets.train`` runs one trial, ``jets.metrics`` scores it.
Like ``tracker``, this package imports neither Ray nor MLflow.
"""
