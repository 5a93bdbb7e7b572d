"""Edits of saved `.keras` files (zip archives), for tests of files as older code or a
damaged disk left them (no tests here; imported by them)."""

import zipfile


def with_member(src, dst, name, edit):
    """Copies the `.keras` file `src` to `dst` with its member `name` (say
    `"config.json"`) replaced by `edit(its bytes)` (bytes or str); `dst`."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for item in old.infolist():
            data = old.read(item.filename)
            new.writestr(item, edit(data) if item.filename == name else data)
    return dst
