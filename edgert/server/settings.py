"""What `edgert serve` is configured with (edgert.server.cli fills it from the command line)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional


@dataclass
class ServerSettings:
    model: str                       # .edgt path (a .gguf is converted by the CLI first)
    host: str = "127.0.0.1"          # loopback by default: nothing outside this machine
    port: int = 8080
    parallel: int = 1                # slots: contexts over the one shared Model
    queue_size: int = 16             # requests that may wait for a slot; more get HTTP 503
    api_key: Optional[str] = None    # Authorization: Bearer KEY required when set
    n_ctx: int = 0                   # per slot (0: min(model's, 4096))
    n_threads: int = 0               # per forward pass (0: physical cores; see threads_per_slot)
    kv_type: str = "auto"
    draft: Optional[str] = None      # draft model for speculative decoding
    speculative: str = "auto"        # as LLM(speculative=...)
    max_body_bytes: int = 1 << 20    # larger request bodies get HTTP 413
    model_alias: str = ""            # the id /v1/models reports (default: the file's stem)
    retry_after_s: int = 1           # Retry-After of a 503 when the queue is full
    batch_decode: bool = True        # slots' decode steps share batched passes (server.batcher)

    @property
    def model_id(self) -> str:
        return self.model_alias or os.path.splitext(os.path.basename(self.model))[0]

    def threads_per_slot(self) -> int:
        """Threads of each slot's context (0 = the runtime's default: physical cores). With
        batch_decode the slots' passes run one at a time, so each takes all of them; without it
        slots decode at the same time and share the cores instead."""
        if self.n_threads > 0 or self.parallel <= 1 or self.batch_decode:
            return self.n_threads
        return max(1, (os.cpu_count() or 1) // self.parallel)
