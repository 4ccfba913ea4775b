"""Layer slicer: the adapter between Slicer's MRML scene and the engine (nodes ⇄ images, the panel's
inputs, the first-use dependency check). Only what both Slicer and the slicer-core wheel provide."""
