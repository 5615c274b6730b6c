"""TrackML data layer: the event reader (``trackml``), detector geometry (``geometry``), the npz hit-graph
importer (``hitgraphs``), rotations (``transforms``), event simulation (``simulate``) and cached datasets
(``dataset``). Import the submodules directly; this package import stays light."""
