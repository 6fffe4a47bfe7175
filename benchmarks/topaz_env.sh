#!/usr/bin/env bash
# Build the Topaz baseline's own virtualenv (never a cryoml dependency).
#
#   bash benchmarks/topaz_env.sh            # creates .topaz-venv/ at the repository root
#   TOPAZ_VENV=/somewhere bash benchmarks/topaz_env.sh
#
# Gotchas handled here:
# * install torch==2.13.0 first and constrain it, or pip pulls a CUDA torch for topaz-em;
# * the torchvision topaz-em pulls is a CUDA build whose custom ops do not load on a CPU torch,
#   which breaks every `topaz` command at import: skip the two `register_fake` decorators in
#   torchvision/_meta_registrations.py when the ops are absent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TOPAZ_VENV:-$root/.topaz-venv}"
python="${PYTHON:-python3.11}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet "torch==2.13.0"
constraints="$(mktemp)"
echo "torch==2.13.0" > "$constraints"
"$venv/bin/pip" install --quiet -c "$constraints" "topaz-em==0.3.20"
rm -f "$constraints"

# Patch torchvision's meta registrations so that missing CUDA ops are skipped.
"$venv/bin/python" - <<'PY'
import importlib.util
import pathlib

spec = importlib.util.find_spec("torchvision")
if spec is None:
    raise SystemExit("torchvision is not installed; nothing to patch")
path = pathlib.Path(spec.submodule_search_locations[0]) / "_meta_registrations.py"
text = path.read_text()
marker = "# cryoml: skip fake registrations of absent ops"
if marker not in text:
    patch = f'''
{marker}
def _cryoml_has_op(name):
    try:
        namespace, op = name.split("::")
        getattr(getattr(torch.ops, namespace), op)
        return True
    except (AttributeError, RuntimeError, ValueError):
        return False


def _cryoml_register_fake(name, *args, **kwargs):
    if not _cryoml_has_op(name):
        return lambda function: function
    return torch.library.register_fake(name, *args, **kwargs)
'''
    lines = text.splitlines(keepends=True)
    # insert the helper after the imports
    last_import = max(i for i, l in enumerate(lines) if l.startswith(("import ", "from ")))
    lines.insert(last_import + 1, patch)
    text = "".join(lines).replace("@torch.library.register_fake(", "@_cryoml_register_fake(")
    path.write_text(text)
    print(f"patched {path}")
else:
    print(f"{path} already patched")
PY
"$venv/bin/topaz" --version
