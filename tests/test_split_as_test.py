"""scripts/split_as_test.py: the part asked for becomes `test`, everything else `held-out`,
and images training dropped (named only by a manifest) are held out, not scored."""

import csv
import subprocess
import sys

from conftest import REPO_ROOT, load_script

SCRIPT = REPO_ROOT / "scripts" / "split_as_test.py"


def test_rewrite_marks_only_the_part_as_test():
    rows = [{"path": "a.jpg", "label": "normal", "group": "0", "split": "train", "source": "x",
             "root": "more"},
            {"path": "b.jpg", "label": "covid", "group": "1", "split": "val", "source": "x",
             "root": "more"},
            {"path": "c.jpg", "label": "normal", "group": "2", "split": "test", "source": "x",
             "root": "more"}]
    manifests = {"more": [{"path": "a.jpg", "label": "normal", "source": "x"},
                          {"path": "d.jpg", "label": "nodule", "source": "x"}]}
    out = load_script("split_as_test").rewrite(rows, "val", manifests)
    parts = {row["path"]: row["split"] for row in out}
    assert parts == {"a.jpg": "held-out", "b.jpg": "test", "c.jpg": "held-out",
                     "d.jpg": "held-out"}
    assert [row["group"] for row in out][-1] == 3


def test_cli_refuses_a_part_the_file_lacks(tmp_path):
    split = tmp_path / "split.csv"
    split.write_text("path,label,group,split\na.jpg,normal,0,train\n")
    result = subprocess.run([sys.executable, str(SCRIPT), str(split), "val"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "no 'val' images" in result.stderr


def test_cli_writes_a_readable_split_file(tmp_path):
    split = tmp_path / "split.csv"
    split.write_text("path,label,group,split\na.jpg,normal,0,val\nb.jpg,covid,1,test\n")
    result = subprocess.run([sys.executable, str(SCRIPT), str(split), "val"],
                            capture_output=True, text=True, check=True)
    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert [(r["path"], r["split"]) for r in rows] == [("a.jpg", "test"), ("b.jpg", "held-out")]
