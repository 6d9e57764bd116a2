"""`edgert chat`: the interactive chat loop.

- Line editing and history with readline (history in ~/.edgert_history) when stdin is a terminal;
  piped stdin is read line by line, so the command can be scripted.
- Multi-line input: end a line with a backslash to continue it, or wrap a block in triple quotes
  (a line holding only \"\"\" opens and closes it).
- Ctrl-C while the model answers stops that answer and keeps the conversation (the partial answer
  stays in it); Ctrl-C at the prompt clears the line; Ctrl-D or /exit quits.
- /reset, /system [TEXT], /save FILE, /load FILE, /help. /save writes the conversation as JSON to
  FILE and the KV cache to FILE.kv, so /load resumes without evaluating the text again.
- Speed after each answer (stderr).
- A conversation that outgrows the context keeps going: the oldest turns are dropped (the system
  prompt is kept) until the conversation plus room for the answer fits.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any, Optional

from .errors import ContextOverflowError, EdgertError


class _SigintHandler:
    """Installs fn as the SIGINT handler while an answer streams (main thread only: Python
    delivers signals there); restore() puts the previous one back."""

    def __init__(self, fn: Any) -> None:
        self.installed = threading.current_thread() is threading.main_thread()
        self.previous: Any = signal.signal(signal.SIGINT, fn) if self.installed else None

    def restore(self) -> None:
        if self.installed:
            signal.signal(signal.SIGINT, self.previous if self.previous is not None
                          else signal.default_int_handler)


HELP = ("/reset starts over, /system [TEXT] shows or sets the system prompt, /save FILE and "
        "/load FILE keep a conversation, /exit quits; end a line with \\ or wrap lines in \"\"\" "
        "for multi-line input; Ctrl-C stops an answer")


class ChatSession:
    def __init__(self, llm: Any, args: argparse.Namespace, gen: dict[str, Any]) -> None:
        self.llm = llm
        self.gen = gen
        self.system = args.system or ""
        self.messages: list[dict[str, str]] = []
        self.interactive = sys.stdin.isatty()
        self._readline: Any = None

    # ---- input ---------------------------------------------------------------------------------
    def _setup_line_editing(self) -> None:
        try:
            import readline
        except ImportError:  # e.g. Windows without pyreadline: plain input() still works
            return
        self._readline = readline
        self._history = os.path.expanduser("~/.edgert_history")
        try:
            readline.read_history_file(self._history)
        except OSError:
            pass
        readline.set_history_length(1000)

    def _save_history(self) -> None:
        if self._readline is not None:
            try:
                self._readline.write_history_file(self._history)
            except OSError:
                pass

    def _read_line(self, prompt: str) -> Optional[str]:
        if self.interactive:
            try:
                return input(prompt)
            except EOFError:
                return None
        line = sys.stdin.readline()
        return line.rstrip("\r\n") if line else None

    def _read_message(self) -> Optional[str]:
        """One user message (several lines with \\ continuations or a \"\"\" block); None at EOF."""
        line = self._read_line("> ")
        if line is None:
            return None
        if line.strip() == '"""':
            parts = []
            while True:
                more = self._read_line("")
                if more is None or more.strip() == '"""':
                    return "\n".join(parts)
                parts.append(more)
        parts = []
        while line.endswith("\\"):
            parts.append(line[:-1])
            line = self._read_line(". ")
            if line is None:
                break
        parts.append(line or "")
        return "\n".join(parts)

    # ---- conversation --------------------------------------------------------------------------
    def _conversation(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.messages

    def _fit(self) -> None:
        """Drop the oldest turns until the conversation plus room for an answer fits."""
        n_ctx = self.llm.n_ctx
        reserve = min(int(self.gen.get("max_tokens", 256)), n_ctx // 4)
        dropped = 0
        while True:
            n = len(self.llm.tokenize(self.llm.render_chat(self._conversation()), add_bos=False))
            if n + reserve <= n_ctx or len(self.messages) <= 1:
                break
            # The oldest exchange: a user message and the answer that followed it.
            cut = 2 if len(self.messages) > 2 and self.messages[1]["role"] == "assistant" else 1
            del self.messages[:cut]
            dropped += 1
        if dropped:
            print(f"(context full: dropped the {dropped} oldest turn(s); the system prompt is "
                  "kept)", file=sys.stderr)

    def _answer(self) -> None:
        self._fit()
        chunks = self.llm.chat(self._conversation(), stream=True, **self.gen)
        parts: list[str] = []
        stopped = False

        # Ctrl-C during an answer only raises a flag, read after each chunk: a KeyboardInterrupt
        # raised wherever the signal lands (inside the session's bookkeeping, the generator's
        # cleanup, the timings) could leave the conversation half-updated or end the program.
        def on_sigint(signum: int, frame: Any) -> None:
            nonlocal stopped
            stopped = True

        handler = _SigintHandler(on_sigint)
        try:
            for chunk in chunks:
                parts.append(chunk)  # first: what was shown is always kept on Ctrl-C
                sys.stdout.write(chunk)
                sys.stdout.flush()
                if stopped:
                    break
        except KeyboardInterrupt:  # a Ctrl-C that came before the handler was in place
            stopped = True
        finally:
            try:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            finally:
                handler.restore()
        sys.stdout.write("\n")
        sys.stdout.flush()
        self.messages.append({"role": "assistant", "content": "".join(parts)})
        t = self.llm.last_timings
        note = " (stopped)" if stopped else ""
        print(f"[{t.n_generated} tokens, {t.decode_tok_s:.1f} tok/s; prompt {t.n_prompt} tokens, "
              f"{t.n_prompt - t.n_reused} evaluated at {t.prefill_tok_s:.0f} tok/s]{note}",
              file=sys.stderr)

    # ---- commands ------------------------------------------------------------------------------
    def _command(self, text: str) -> bool:
        """Run a /command; False to quit."""
        cmd, _, arg = text.strip().partition(" ")
        arg = arg.strip()
        if cmd == "/exit":
            return False
        if cmd == "/reset":
            self.messages = []
            self.llm.reset()
            print("(conversation reset)", file=sys.stderr)
        elif cmd == "/system":
            if arg:
                self.system = arg
                print("(system prompt set; the conversation goes on)", file=sys.stderr)
            else:
                print(f"(system prompt: {self.system!r})", file=sys.stderr)
        elif cmd == "/save" and arg:
            with open(arg, "w", encoding="utf-8") as f:
                json.dump({"system": self.system, "messages": self.messages}, f, indent=1,
                          ensure_ascii=False)
            self.llm.save_state(arg + ".kv")
            print(f"(saved to {arg} and {arg}.kv)", file=sys.stderr)
        elif cmd == "/load" and arg:
            with open(arg, encoding="utf-8") as f:
                saved = json.load(f)
            if not isinstance(saved, dict) or not isinstance(saved.get("messages"), list):
                raise EdgertError(f"{arg}: not a conversation saved by /save")
            self.system = str(saved.get("system") or "")
            self.messages = [{"role": str(m["role"]), "content": str(m["content"])}
                             for m in saved["messages"]]
            try:
                self.llm.load_state(arg + ".kv")
                note = "with its KV cache"
            except (EdgertError, OSError) as e:
                self.llm.reset()
                note = f"without its KV cache ({e}); the next answer evaluates the text"
            print(f"(loaded {len(self.messages)} messages {note})", file=sys.stderr)
        else:
            print(HELP, file=sys.stderr)
        return True

    def run(self) -> int:
        self.llm.render_chat([{"role": "user", "content": "hi"}])  # fail now without a template
        if self.interactive:
            self._setup_line_editing()
            print(f"edgert chat: {HELP}", file=sys.stderr)
        try:
            while True:
                try:
                    text = self._read_message()
                except KeyboardInterrupt:
                    print("\n(Ctrl-D or /exit quits)", file=sys.stderr)
                    continue
                if text is None:
                    break
                if text.strip().startswith("/"):
                    try:
                        if not self._command(text):
                            break
                    except (EdgertError, OSError, ValueError) as e:
                        print(f"edgert: error: {e}", file=sys.stderr)
                    continue
                if not text.strip():
                    continue
                self.messages.append({"role": "user", "content": text})
                try:
                    self._answer()
                except ContextOverflowError as e:
                    self.messages.pop()
                    print(f"edgert: error: {e} (type /reset to start over)", file=sys.stderr)
        finally:
            self._save_history()
        return 0
