"""`python -m covid_edge` is the `covid-edge` command (handy where the script is not on PATH)."""

from .cli import entry

if __name__ == "__main__":
    entry()
