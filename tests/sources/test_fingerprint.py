"""What a plugin reaches in its source (helixlab.sources), and the kernel's digests."""

from __future__ import annotations

import textwrap

from helixlab.kernel import Fingerprint
from helixlab.kernel._fingerprint import class_fingerprint
from helixlab.sources import reaches

SOURCE = textwrap.dedent(
    '''\
    from __future__ import annotations
    import helixlab as hx

    RATE = 5
    LIMITS = {}
    LIMITS["default"] = RATE


    def refill(tokens):
        return tokens + RATE


    class TokenBucket:
        """Tokens, refilled."""

        def take(self):
            return refill(1)


    class Settings:
        pass


    class Unused:
        pass


    class Limiter(hx.Plugin):
        name = "limiter"

        def init(self, ctx, config: "Settings"):
            bucket = TokenBucket()  # a local, not the notebook's `bucket`
            self.bucket = bucket
            return LIMITS, OTHER


    class Api(hx.Plugin):
        name = "api"
    '''
)


def names(source: str, cls: str) -> set[str]:
    parts = [name for name, _ in reaches(source, [cls])[cls].parts]
    assert parts[0] == cls  # the class itself first
    return set(parts)


def test_a_class_reaches_the_helpers_it_uses_transitively_and_nothing_else():
    assert names(SOURCE, "Limiter") == {
        "Limiter",
        "Settings",  # a string annotation
        "TokenBucket",
        "hx",
        "LIMITS",  # with the statement that fills it
        "refill",
        "RATE",
        "from __future__ import annotations",  # counts for every class
    }
    assert names(SOURCE, "Api") == {"Api", "hx", "from __future__ import annotations"}
    assert reaches(SOURCE, ["Limiter"])["Limiter"].outside == ("OTHER",)


def test_comments_blank_lines_and_line_numbers_do_not_count_but_docstrings_do():
    before = reaches(SOURCE, ["Limiter"])["Limiter"].fingerprint()
    moved = "\n\n# a comment\n" + SOURCE.replace("RATE = 5", "RATE = 5  # tokens per call")
    assert reaches(moved, ["Limiter"])["Limiter"].fingerprint() == before
    doc = SOURCE.replace("Tokens, refilled.", "Tokens.")
    assert reaches(doc, ["Limiter"])["Limiter"].fingerprint().changed(before) == ["TokenBucket"]


def test_a_change_names_what_changed_and_leaves_other_classes_alone():
    before = {c: r.fingerprint() for c, r in reaches(SOURCE, ["Limiter", "Api"]).items()}
    edited = SOURCE.replace('LIMITS["default"] = RATE', 'LIMITS["default"] = 2 * RATE')
    after = {c: r.fingerprint() for c, r in reaches(edited, ["Limiter", "Api"]).items()}
    assert after["Limiter"].changed(before["Limiter"]) == ["LIMITS"]
    assert after["Api"] == before["Api"]


def test_values_from_the_namespace_are_parts_objects_with_state_count_by_type():
    reach = reaches(SOURCE, ["Limiter"])["Limiter"]
    one, two = reach.fingerprint({"OTHER": 1}), reach.fingerprint({"OTHER": 2})
    assert two.changed(one) == ["OTHER"]

    class Client:  # an object with state: its repr may change, its type does not
        def __repr__(self) -> str:
            return f"<Client {id(self)}>"

    assert reach.fingerprint({"OTHER": Client()}) == reach.fingerprint({"OTHER": Client()})
    assert reach.fingerprint({}).changed(one) == ["OTHER"]  # gone counts as changed


def _make(line: int) -> type:
    namespace: dict = {}
    source = "\n" * line + "class C:\n    x = 1\n    def f(self):\n        self.y = 2\n"
    exec(compile(source, "<cell>", "exec"), namespace)
    return namespace["C"]


def test_a_class_without_source_is_digested_from_its_code_alone_on_every_python():
    # 3.13 adds __firstlineno__ and __static_attributes__: neither is the code
    assert class_fingerprint(_make(1)) == class_fingerprint(_make(40))
    assert isinstance(class_fingerprint(_make(1)), Fingerprint)


def test_a_mutating_call_and_a_global_statement_bind_their_name():
    source = textwrap.dedent(
        """\
        SEEN = []
        SEEN.append(1)
        def reset():
            global COUNT
            COUNT = 0
        class P:
            def f(self):
                return SEEN, COUNT
        """
    )
    assert names(source, "P") == {"P", "COUNT", "SEEN"}  # COUNT: the code of reset()


def test_an_import_moved_to_another_cell_is_no_change():
    import helixlab

    here = reaches("import helixlab as hx\nclass P(hx.Plugin):\n    pass\n", ["P"])["P"]
    there = reaches("class P(hx.Plugin):\n    pass\n", ["P"])["P"]
    assert there.fingerprint({"hx": helixlab}) == here.fingerprint({})
    assert there.fingerprint({"hx": textwrap}).changed(here.fingerprint({})) == ["hx"]
