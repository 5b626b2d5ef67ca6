"""Atomic files survive kills; concurrent sample adds are never lost; switching does not leak memory."""

import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

from neuronscope.config import Settings
from neuronscope.modeling.manager import ModelManager
from neuronscope.storage.files import TEMP_PREFIX, JsonFolder, atomic_write_json
from neuronscope.storage.folders import staged_folder

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from neuronscope.storage.files import atomic_write_json
    target = Path(sys.argv[1])
    i = 0
    while True:
        atomic_write_json(target, {"i": i, "payload": [i] * 200_000})
        i += 1
        print(i, flush=True)
    """
)


def test_writer_killed_at_random_moments_leaves_a_parseable_file(tmp_path):
    target = tmp_path / "result.json"
    rng = random.Random(0)
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE)
        proc.stdout.readline()  # at least one complete write happened
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = json.loads(target.read_text())
        assert data["payload"] == [data["i"]] * 200_000
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert JsonFolder(tmp_path, "result").list() == ["result.json"]
    assert all(name not in JsonFolder(tmp_path, "result").list() for name in leftovers)


def test_concurrent_sample_adds_are_all_kept(client):
    prompts = [f"concurrent prompt {i}" for i in range(40)]

    def add(batch):
        for prompt in batch:
            assert client.post("/api/samples", json={"prompt": prompt}).status_code == 201

    threads = [threading.Thread(target=add, args=(prompts[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = client.get("/api/samples").get_json()
    assert set(prompts) <= set(stored) and len(stored) == len(set(stored))


def _save_mid_models(folder):
    configs = {
        "mid-gpt2": GPT2Config(n_embd=256, n_layer=4, n_head=4, vocab_size=320, n_positions=64),
        "mid-llama": LlamaConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                                 num_attention_heads=4, vocab_size=320, max_position_embeddings=64),
    }
    for name, config in configs.items():
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(folder / name)
        for file in (folder.parent / "models-src").glob("*"):
            (folder / name / file.name).write_bytes(file.read_bytes())


def test_switching_back_and_forth_does_not_grow_memory(models_dir, tmp_path):
    folder = tmp_path / "models"
    (tmp_path / "models-src").mkdir()
    for file in (models_dir / "tiny-gpt2").iterdir():
        if file.name.startswith("tokenizer") or file.name == "special_tokens_map.json":
            (tmp_path / "models-src" / file.name).write_bytes(file.read_bytes())
    _save_mid_models(folder)
    manager = ModelManager(Settings.from_env(data_dir=tmp_path / "data", models_dir=folder, model="mid-gpt2", offline=True))
    model_bytes = manager.ensure_loaded().parameter_bytes()
    process = psutil.Process(os.getpid())
    rss = []
    for i in range(10):
        manager.switch("mid-llama" if i % 2 == 0 else "mid-gpt2")
        rss.append(process.memory_info().rss)
    growth = max(rss[4:]) - rss[3]
    assert model_bytes > 10_000_000
    assert growth < model_bytes, f"RSS grew by {growth} bytes over 6 switches (model {model_bytes} bytes)"


def test_atomic_files_and_staged_folders_get_the_modes_of_a_plain_open(tmp_path):
    mask = os.umask(0)
    os.umask(mask)
    atomic_write_json(tmp_path / "result.json", {"x": 1})
    with staged_folder(tmp_path / "model") as staging:
        (staging / "weights.bin").write_bytes(b"w")
        (staging / "weights.bin").chmod(0o600)
    assert stat.S_IMODE((tmp_path / "result.json").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((tmp_path / "model" / "weights.bin").stat().st_mode) == 0o666 & ~mask
