"""Reading with a fitted language model: the next word, filled-in blanks, states per character.

:class:`TextReadingMixin` gives :class:`~charrnn.estimators.generator.CharRNNGenerator` its
``complete``, ``fill`` and ``trace`` methods and the beam search behind
``sample(beam_width=...)``: each checks its arguments and calls the engine
(:mod:`charrnn.engine.beam`, :mod:`charrnn.engine.trace`) or the generator's own scoring, so
the generator's module stays about training, scoring and sampling.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from charrnn.data.blanks import check_candidates, fill_template, template_parts
from charrnn.data.vocab import CharVocab
from charrnn.engine.beam import beam_search
from charrnn.engine.trace import TextTrace, trace_text
from charrnn.estimators.params import Integer

__all__ = ["TextReadingMixin"]


class TextReadingMixin:
    """``complete``, ``fill``, ``trace`` and beam sampling for a fitted character model.

    The class using it provides ``vocab_`` (:class:`~charrnn.data.vocab.CharVocab`),
    ``params_``, ``config_`` and ``_loglik(docs)`` (total log-likelihood per document).
    """

    def _beam_sample(
        self, n, length, prime_ids, beam_width, stop_at_end, temperature, top_k, top_p
    ):
        """:meth:`sample` with a ``beam_width``: the ``n`` most likely continuations."""
        if temperature != 1.0 or top_k is not None or top_p is not None:
            raise ValueError(
                "beam_width returns the most likely texts by the model's own probabilities; "
                f"leave temperature at 1 and top_k, top_p at None (got temperature="
                f"{temperature!r}, top_k={top_k!r}, top_p={top_p!r})"
            )
        if n > beam_width:
            raise ValueError(
                f"n_samples ({n}) must be at most beam_width ({beam_width}): the beam holds "
                "the candidates returned"
            )
        eod = np.zeros(self.vocab_.size, dtype=bool)
        eod[CharVocab.EOD_ID] = stop_at_end
        grow = np.ones(self.vocab_.size, dtype=bool)
        grow[CharVocab.UNK_ID] = False  # never generated, as in random sampling
        grow &= ~eod
        found = beam_search(
            self.params_,
            self.config_,
            prime_ids,
            extend=grow,
            end=eod if stop_at_end else None,
            beam_width=beam_width,
            n_best=n,
            max_steps=length,
        )
        return [self.vocab_.decode(ids, eod="\n") for ids, _ in found]

    def _check_known(self, name: str, text, *, allow_empty: bool = True) -> str:
        """``text`` as a string the model can read: ValueError naming ``name`` otherwise."""
        if not isinstance(text, str):
            raise TypeError(f"{name} must be a string, got {type(text).__name__}")
        if not text and not allow_empty:
            raise ValueError(f"{name} must not be empty")
        unknown = self.vocab_.unknown_chars(text)
        if unknown:
            shown = "".join(unknown[:40]) + (" ..." if len(unknown) > 40 else "")
            raise ValueError(
                f"{name} contains {len(unknown)} character(s) the model never saw in training: "
                f"{shown!r}"
            )
        return text

    def complete(self, prefix, top_k=5, max_chars=30, *, beam_width=None) -> list[tuple]:
        """The ``top_k`` most likely next words after ``prefix``, with their probabilities.

        A beam search over characters (:func:`charrnn.engine.beam.beam_search`) grows words
        by word characters (letters, digits, apostrophes and hyphens:
        :func:`charrnn.data.vocab.is_word_char`) until a boundary: any other character
        (space, punctuation, newline) or the end of the document. A word's probability is the
        model's: the product of its characters' probabilities times the probability that a
        boundary (any one) follows.

        The prefix is read from the start of a document. If it does not end in whitespace,
        the next word is taken to start after one space: the space's probability is part of
        each word's probability, and the space is not part of the word. So
        ``complete("The cat sat on the")`` gives ``p(" mat" + boundary | prefix)`` as the
        probability of ``"mat"``, and ``complete("The cat sat on the ")`` gives
        ``p("mat" + boundary | prefix)``.

        Parameters
        ----------
        prefix : str
            Non-empty, of characters seen in training.
        top_k : int >= 1
            Words returned (fewer when fewer words of at most ``max_chars`` characters end
            within the beam).
        max_chars : int >= 1
            Longest word searched for.
        beam_width : int >= 1 or None
            Unfinished words kept at each character; None keeps ``max(8 * top_k, 64)``. The
            search stops as soon as no unfinished word can beat the ``top_k``-th finished one,
            so a wide beam costs little; on a Shakespeare model a beam of 16 missed words
            that 32 and more found (docs/benchmarks.md).

        Returns
        -------
        list of (str, float)
            ``(word, probability)``, most likely first.

        Examples
        --------
        >>> from charrnn import CharRNNGenerator
        >>> gen = CharRNNGenerator(hidden_size=16, num_layers=1, max_iter=3, random_state=0)
        >>> gen = gen.fit("the cat sat on the mat. " * 50)
        >>> [word for word, p in gen.complete("the cat sat on the", top_k=2)]  # doctest: +SKIP
        ['mat', 'cat']
        """
        check_is_fitted(self)
        self._check_known("prefix", prefix, allow_empty=False)
        Integer(1).check("top_k", top_k)
        Integer(1).check("max_chars", max_chars)
        Integer(1, none_ok=True).check("beam_width", beam_width)
        word = self.vocab_.word_mask()
        boundary = ~word
        boundary[CharVocab.UNK_ID] = False  # an unseen character neither grows nor ends a word
        lead = "" if prefix[-1].isspace() or " " not in self.vocab_ else " "
        found = beam_search(
            self.params_,
            self.config_,
            np.concatenate(([CharVocab.EOD_ID], self.vocab_.encode(prefix))),
            forced_ids=self.vocab_.encode(lead),
            extend=word,
            end=boundary,
            beam_width=max(8 * top_k, 64) if beam_width is None else beam_width,
            n_best=top_k,
            max_steps=max_chars,
            end_at_max=False,
            min_steps=1,
        )
        return [(self.vocab_.decode(ids), float(np.exp(logp))) for ids, logp in found]

    def fill(self, template, candidates) -> list[tuple]:
        """Rank the ways to fill the blanks (``___``) of ``template`` by the model.

        Every combination of the candidates is written into the template and the filled
        texts are ranked by their log-likelihood as whole documents
        (:meth:`score_samples`), so the text after a blank counts as much as the text before
        it: a left-to-right model sees the right-hand context through how likely it makes
        what follows.

        Parameters
        ----------
        template : str
            Text holding one or more blanks, each three underscores ``___``.
        candidates : list of list of str
            The options for each blank, one list per blank in order, e.g.
            ``[["film", "book"], ["good", "bad"]]``.

        Returns
        -------
        list of (str, float)
            ``(filled text, log-likelihood in nats)``, best first.

        Examples
        --------
        >>> from charrnn import CharRNNGenerator
        >>> gen = CharRNNGenerator(hidden_size=16, num_layers=1, max_iter=3, random_state=0)
        >>> gen = gen.fit("the dog barks. the cat meows. " * 40)
        >>> gen.fill("the ___ barks.", [["cat", "dog"]])[0][0]  # doctest: +SKIP
        'the dog barks.'
        """
        check_is_fitted(self)
        parts = template_parts(template)
        lists = check_candidates(candidates, len(parts) - 1)
        self._check_known("template", "".join(parts))
        for i, options in enumerate(lists):
            for j, option in enumerate(options):
                self._check_known(f"candidates[{i}][{j}]", option)
        texts = fill_template(parts, lists)
        scores = self._loglik(texts)
        order = np.argsort(-scores, kind="stable")
        return [(texts[i], float(scores[i])) for i in order]

    def trace(self, text) -> TextTrace:
        """The model's states and predictions at every character of ``text``.

        ``text`` is read from the start of a document, as :meth:`score_samples` reads it.

        Parameters
        ----------
        text : str
            Non-empty, of characters seen in training.

        Returns
        -------
        charrnn.engine.trace.TextTrace
            ``surprise`` (n,): ``-log p`` of each character given those before it (nats);
            ``next_log_proba`` (n, n_classes): log-probabilities of the symbol after each
            character, columns in ``classes_`` order; ``hidden`` (num_layers, n,
            hidden_size): every layer's hidden state after each character; ``cell``: the
            LSTM's cell states, same shape, or None.
        """
        check_is_fitted(self)
        self._check_known("text", text, allow_empty=False)
        return trace_text(self.params_, self.config_, self.vocab_.encode(text), CharVocab.EOD_ID)
