"""streamdet's neutral core: the data types, box math, the one image
preprocessing, model metadata and shared file formats. Imports nothing else of
the project, so every other package can import it."""
