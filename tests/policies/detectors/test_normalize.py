"""The normalised view's table of changed characters."""

from __future__ import annotations

from bastion.policies.detectors.normalize import UNASSIGNED_PLANES, changed_chars, changed_in


def test_the_planes_skipped_hold_no_character_the_view_changes() -> None:
    # changed_chars does not ask about these planes (nothing there is assigned or it is private use); with
    # a Unicode version that assigns something there, this fails and the skip list must shrink.
    assert changed_in(list(UNASSIGNED_PLANES)) == []


def test_the_table_holds_the_characters_of_each_kind() -> None:
    table = changed_chars()
    for ch in ("\u200b", "\u00ad", "\ufeff", "\u0663", "\uff11", "\u00a0", "\u202f", "\u2013", "\u2212", "\uff20"):
        assert ch in table, hex(ord(ch))
    for ch in ("é", "ß", "\ue000", "\U000f0000", "\U0001f600"):
        assert ch not in table, hex(ord(ch))
