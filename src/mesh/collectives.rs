//! Collectives on the mesh.
