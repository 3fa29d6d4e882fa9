"""covid-edge: a chest X-ray COVID-19 screening classifier, from Keras training to an int8
TFLite model on a Raspberry Pi or Coral kiosk.

Research and education software, not a medical device.
"""

__version__ = "0.3.0"

# One line of at most 100 columns: it ends every command's output.
DISCLAIMER = ("Research and education software, not a medical device: not for diagnosis, "
              "treatment or triage.")


def install_hint(extra: str) -> str:
    """The command that adds an optional extra. covid-edge is installed from a clone or a wheel,
    not from PyPI, so "covid-edge[extra]" would not resolve: name the extra's own packages
    (from the installed metadata), which pip finds anywhere, and the clone form."""
    packages: list[str] = []
    try:
        from importlib.metadata import PackageNotFoundError, requires

        for requirement in requires("covid-edge") or []:
            spec, _, marker = requirement.partition(";")
            if f'extra == "{extra}"' in marker.replace("'", '"'):
                packages.append(spec.strip().replace(" ", ""))
    except (ImportError, PackageNotFoundError):
        pass
    clone = f"pip install '.[{extra}]' in a clone of covid-edge"
    if not packages:
        return clone
    return "pip install " + " ".join(f"'{p}'" for p in packages) + f" (or {clone})"
