"""Keras model files checked before TensorFlow loads (seconds): what Keras would refuse only
after the data has loaded is refused in one line, exit 3."""

from __future__ import annotations

from ..cli_paths import file_error

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"  # a .keras file is a zip


def check_keras_file(model: str) -> None:
    """MODEL must be a file Keras loads before TensorFlow is: anything else is exit 3 with one
    line, not Keras' traceback minutes later. Keras goes by the name: a .keras file must be a
    zip holding the config.json it saves, a .h5/.hdf5 one an HDF5 file holding a whole model
    (model_config), not only weights."""
    try:
        with open(model, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise file_error(f"cannot read {model}: {exc.strerror}") from None
    name = str(model)  # Keras matches the suffix case-sensitively
    if name.endswith(".keras"):
        why = (None if head.startswith(ZIP_SIGNATURE) else
               "an HDF5 file, which Keras reads only as .h5" if head == HDF5_SIGNATURE else
               "not a zip")
        why = why or _keras_zip_problem(model)
    elif name.endswith((".h5", ".hdf5")):
        why = "not an HDF5 file" if head != HDF5_SIGNATURE else _hdf5_model_problem(model)
    else:
        why = "Keras loads a .keras file (or a legacy .h5 model) only"
    if why:
        raise file_error(f"{model} is not a Keras model (a model.keras that training wrote): "
                         f"{why}")


def _keras_zip_problem(model: str) -> str | None:
    import zipfile

    try:
        with zipfile.ZipFile(model) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return "a damaged zip"
    return None if "config.json" in names else "a zip without the config.json Keras saves"


def _hdf5_model_problem(model: str) -> str | None:
    try:
        import h5py
    except ImportError:
        return None  # Keras, which needs h5py, says what to install
    try:
        with h5py.File(model, "r") as handle:
            whole_model = "model_config" in handle.attrs
    except OSError:
        return "a damaged HDF5 file"
    return None if whole_model else "HDF5 weights without a model (no model_config)"
