"""Media paths and file types: sanitised, unique per media id, extension rules."""

from __future__ import annotations

import pytest

from shared.claimx.paths import MAX_NAME_CHARS, media_extension, media_target, safe_name
from shared.errors import ClassifiedError, ErrorCategory

pytestmark = pytest.mark.unit

LINK = "https://www.claimxperience.com/service/cxedirest/media/97138881?systemDate=1&expires=2&sign=x"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("kitchen_01.jpg", "kitchen_01.jpg"),
        ("Kitchen Wall #2.JPG", "Kitchen_Wall__2.JPG"),
        ("../../etc/passwd.txt", "passwd.txt"),
        ("a\\b\\c.pdf", "c.pdf"),
        (".hidden.png", "hidden.png"),
        ("..", "media_9"),
        ("", "media_9"),
        (None, "media_9"),
        ("///", "media_9"),
        ("ünïcode ñame.pdf", "_n_code__ame.pdf"),
        ("a\x00b\nc.jpg", "a_b_c.jpg"),
    ],
)
def test_safe_name(name: str | None, expected: str) -> None:
    assert safe_name(name, "9") == expected


def test_long_names_keep_their_extension() -> None:
    name = safe_name("x" * 400 + ".jpeg", "9")
    assert len(name) == MAX_NAME_CHARS and name.endswith(".jpeg")


def test_target_path_is_unique_per_media_id() -> None:
    a = media_target("5395115", "1", "photo.jpg", LINK)
    b = media_target("5395115", "2", "photo.jpg", LINK)
    assert (a.blob_path, b.blob_path) == ("5395115/media/1_photo.jpg", "5395115/media/2_photo.jpg")
    assert a.file_type == "JPG"


@pytest.mark.parametrize(
    ("link", "name", "extension"),
    [
        ("https://h/x/a.pdf?sign=1", "photo.jpg", "pdf"),  # the path wins
        ("https://h/x/media/1?filename=scan.png", "photo.jpg", "png"),  # then the query parameter
        ("https://h/x/media/1?file=scan.tif", None, "tif"),
        (LINK, "Roof.JPEG", "jpeg"),  # then the media name
    ],
)
def test_extension_sources_in_order(link: str, name: str | None, extension: str) -> None:
    assert media_extension(link, name) == extension


@pytest.mark.parametrize(("name", "reason"), [("notes", "no file extension"), ("tool.exe", "not allowed")])
def test_missing_or_disallowed_extension_is_permanent(name: str, reason: str) -> None:
    with pytest.raises(ClassifiedError) as error:
        media_target("1", "2", name, LINK)
    assert error.value.failure.category is ErrorCategory.PERMANENT and reason in error.value.failure.message


@pytest.mark.parametrize(("project", "media"), [("../1", "2"), ("1", "2/../../x"), ("1", "")])
def test_ids_that_are_not_digits_cannot_name_a_folder(project: str, media: str) -> None:
    with pytest.raises(ClassifiedError):
        media_target(project, media, "a.jpg", LINK)
