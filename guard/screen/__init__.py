"""Prompt screen: normalisation, sentence embeddings, FAISS neighbour search over concept phrases."""

from guard.screen.embedder import Embedder, get_embedder
from guard.screen.normalize import normalize, segments
from guard.screen.screen import ConceptScore, PromptScreen, ScreenResult, get_screen

__all__ = [
    "ConceptScore",
    "Embedder",
    "PromptScreen",
    "ScreenResult",
    "get_embedder",
    "get_screen",
    "normalize",
    "segments",
]
