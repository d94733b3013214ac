"""Command line: ``whisper-service serve | transcribe | models | config``."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

from whisper_service.config import (
    EngineName,
    Settings,
    SettingsError,
    env_var_name,
    load_settings,
)

EXIT_CONFIG_ERROR = 2
# Shorter files finish before a progress bar would tell anything.
PROGRESS_MIN_SECONDS = 30.0


def _settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {k: v for k, v in extra.items() if v is not None}
    for key in ("engine", "model", "app_env"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    return load_settings(**overrides)


def cmd_serve(args: argparse.Namespace) -> NoReturn:
    """Check the configuration and the model, then exec gunicorn (becoming PID 1's child
    or PID 1 itself, so the platform's signals reach the master directly)."""
    from whisper_service.serving.startup import resolve_configured_model

    settings = _settings_from(args, host=args.host, port=args.port, web_workers=args.workers)
    settings.check_servable()
    resolve_configured_model(settings)
    env = os.environ.copy()
    for field, value in (("host", settings.host), ("port", settings.port)):
        env[env_var_name(field)] = str(value)
    env[env_var_name("web_workers")] = str(settings.web_workers)
    for key in ("engine", "model", "app_env"):
        env[env_var_name(key)] = str(
            getattr(settings, key).value if key != "model" else settings.model
        )
    gunicorn = shutil.which("gunicorn") or str(Path(sys.executable).with_name("gunicorn"))
    argv = [
        gunicorn,
        "--config",
        "python:whisper_service.gunicorn_conf",
        "whisper_service.app:app_from_env()",
    ]
    os.execve(gunicorn, argv, env)  # noqa: S606 - fixed argv, no shell involved


def cmd_transcribe(args: argparse.Namespace) -> int:
    """Transcribe local files in-process, with a progress bar per file."""
    from tqdm import tqdm

    from whisper_service.audio import AudioError, decode_audio
    from whisper_service.engines.base import TranscribeOptions
    from whisper_service.engines.languages import normalize_language
    from whisper_service.formats import TEXT_WRITERS, ResponseFormat, segment_dict
    from whisper_service.long_audio import transcribe_audio
    from whisper_service.serving.startup import load_model

    settings = _settings_from(args, warmup=False)
    engine = load_model(settings).engine
    fmt = ResponseFormat(args.format)
    options = TranscribeOptions(
        language=normalize_language(args.language),
        task=args.task,
        beam_size=args.beam_size or settings.default_beam_size,
        word_timestamps=args.word_timestamps,
        vad_filter=args.vad_filter,
    )
    failures = 0
    for name in args.files:
        try:
            audio = decode_audio(name, max_seconds=settings.max_audio_seconds)
        except (AudioError, OSError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            failures += 1
            continue
        with tqdm(
            total=round(audio.duration, 1),
            unit="s",
            desc=Path(name).name,
            disable=args.quiet or audio.duration < PROGRESS_MIN_SECONDS,
            file=sys.stderr,
        ) as bar:

            def advance(done: float, bar: Any = bar, total: float = audio.duration) -> None:
                bar.update(max(0.0, round(min(done, total), 1) - bar.n))

            result = transcribe_audio(
                engine,
                audio.samples,
                options,
                on_segment=lambda segment: advance(segment.end),
                long_from=settings.long_audio_from,
            )
            advance(audio.duration)
        if fmt in TEXT_WRITERS:
            output = TEXT_WRITERS[fmt](result)
        else:
            data: dict[str, Any] = {
                "text": result.text,
                "language": result.language,
                "duration": result.duration,
            }
            if fmt is ResponseFormat.VERBOSE_JSON:
                data["segments"] = [
                    segment_dict(s, with_words=args.word_timestamps) for s in result.segments
                ]
            output = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
        if args.output_dir:
            target = (
                Path(args.output_dir) / f"{Path(name).stem}.{fmt.value.replace('verbose_', '')}"
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(output)
            print(target)
        else:
            sys.stdout.write(output)
    return 1 if failures else 0


def cmd_models_list(args: argparse.Namespace) -> int:
    """Embedded models and what the cache holds."""
    from whisper_service.models import EMBEDDED_MODELS, embedded_available

    settings = _settings_from(args)
    rows = [
        {
            "name": m.name,
            "source": "embedded",
            "available": embedded_available(m.name),
            "description": m.description,
        }
        for m in EMBEDDED_MODELS.values()
    ]
    cache = settings.model_cache_dir
    for path in sorted((cache / "openai-whisper").glob("*.pt")):
        rows.append({"name": path.stem, "source": "cache", "available": True, "path": str(path)})
    for path in sorted((cache / "ctranslate2").glob("*/model.bin")):
        rows.append(
            {
                "name": path.parent.name,
                "source": "cache",
                "available": True,
                "path": str(path.parent),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            state = "available" if row["available"] else "missing  "
            detail = row.get("description", row.get("path", ""))
            print(f"{row['name']:<28} {row['source']:<9} {state} {detail}")
    return 0


def cmd_models_prepare(args: argparse.Namespace) -> int:
    """Resolve the model for the engine now (convert, assemble or download into the
    cache), and the speaker encoder's graph when diarization is on, so a container
    start loads from disk."""
    from whisper_service.serving.startup import resolve_configured_model

    settings = _settings_from(args)
    engines = list(EngineName) if args.all_engines else [settings.engine]
    for engine in engines:
        artifact = resolve_configured_model(settings, engine, allow_download=args.download)
        print(f"{engine.value}: {artifact.name} ({artifact.format.value}) at {artifact.path}")
    if settings.diarization:
        from whisper_service.diarization.encoder import onnx_model

        print(f"speaker encoder: {onnx_model(settings.model_cache_dir)}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    """Print the effective configuration (secrets redacted)."""
    settings = _settings_from(args)
    data = settings.model_dump(mode="json")
    if args.format == "yaml":
        import yaml

        print(yaml.safe_dump(data, sort_keys=False), end="")
    elif args.format == "env":
        for name, value in settings.environment().items():
            print(f"{name}={value}")
    else:
        print(json.dumps(data, indent=2))
    return 0


def cmd_config_docs(args: argparse.Namespace) -> int:
    """Regenerate the settings and presets tables of docs/configuration.md."""
    from whisper_service.config.docs import render_into

    path = Path(args.file)
    fresh = render_into(path.read_text())
    if args.check:
        if fresh != path.read_text():
            print(f"{path} is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    path.write_text(fresh)
    print(path)
    return 0


def cmd_config_validate(args: argparse.Namespace) -> int:
    """Check the configuration against every deployment rule; list each problem."""
    from whisper_service.deploy.rules import problems

    try:
        settings = _settings_from(args)
    except SettingsError as exc:
        print(f"INVALID: {exc}", file=sys.stderr)
        return 1
    found = problems(settings)
    for problem in found:
        print(f"INVALID: {problem}", file=sys.stderr)
    if not found:
        print(f"{settings.app_env.value}: valid")
    return 1 if found else 0


def cmd_deploy_render(args: argparse.Namespace) -> int:
    """Write the Cloud Run manifests of a preset (the shell's environment is ignored)."""
    from whisper_service.config import preset_settings
    from whisper_service.deploy.cloud_run import render
    from whisper_service.deploy.rules import problems

    settings = preset_settings(args.app_env or "production")
    found = problems(settings)
    if found:
        for problem in found:
            print(f"INVALID: {problem}", file=sys.stderr)
        return 1
    for path in render(settings, Path(args.output_dir), args.image):
        print(path)
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    """Transcribe this task's share of a gs:// prefix (a Cloud Run Job's task)."""
    from whisper_service.bulk import BatchRun, Shard, prefixes
    from whisper_service.engines.base import TranscribeOptions
    from whisper_service.engines.languages import normalize_language
    from whisper_service.formats import ResponseFormat
    from whisper_service.serving.startup import load_model

    settings = _settings_from(args)
    shard = Shard.from_env()
    prefixes(args.input, args.output)  # before the model loads: a mistake fails at once
    options = TranscribeOptions(
        language=normalize_language(args.language),
        beam_size=args.beam_size or settings.default_beam_size,
    )
    engine = load_model(settings).engine
    run = BatchRun(settings, engine, args.input, args.output, ResponseFormat(args.format), options)
    report = run.run(shard)
    summary = {
        "task": shard.index,
        "count": shard.count,
        "done": len(report.done),
        "skipped": len(report.skipped),
        "failed": len(report.failed),
        "retryable": report.retryable,
    }
    print(json.dumps(summary))
    # Exit 1 only for what a retry may fix (storage trouble): Cloud Run then reruns
    # the task, which resumes; a bad input would fail the same way every time.
    return 1 if report.retryable else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="whisper-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--engine", choices=[e.value for e in EngineName])
        p.add_argument("--model", help="model spec (default: WHISPER_MODEL or tiny.en)")
        p.add_argument("--env", dest="app_env", choices=["production", "staging", "development"])

    serve = sub.add_parser("serve", help="run the HTTP service under gunicorn")
    common(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="gunicorn worker processes")
    serve.set_defaults(func=cmd_serve)

    tr = sub.add_parser("transcribe", help="transcribe local files")
    common(tr)
    tr.add_argument("files", nargs="+", metavar="FILE")
    tr.add_argument("--format", default="text", choices=[f.value for f in _formats()])
    tr.add_argument("--language")
    tr.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    tr.add_argument("--beam-size", type=int)
    tr.add_argument("--word-timestamps", action="store_true")
    tr.add_argument("--vad-filter", action="store_true")
    tr.add_argument("--output-dir", help="write FILE-stem.FORMAT files here instead of stdout")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_transcribe)

    batch = sub.add_parser(
        "batch", help="transcribe every object under a gs:// prefix (a Cloud Run Job task)"
    )
    common(batch)
    batch.add_argument("--input", required=True, help="gs://bucket/prefix/ of the audio")
    batch.add_argument("--output", required=True, help="gs://bucket/prefix/ for transcripts")
    batch.add_argument("--format", default="json", choices=[f.value for f in _formats()])
    batch.add_argument("--language")
    batch.add_argument("--beam-size", type=int)
    batch.set_defaults(func=cmd_batch)

    models = sub.add_parser("models", help="list or prepare models")
    msub = models.add_subparsers(dest="models_command", required=True)
    ml = msub.add_parser("list", help="embedded and cached models")
    common(ml)
    ml.add_argument("--json", action="store_true")
    ml.set_defaults(func=cmd_models_list)
    mp = msub.add_parser("prepare", help="convert/assemble/download a model into the cache")
    common(mp)
    mp.add_argument("--download", action="store_true", help="allow network downloads")
    mp.add_argument("--all-engines", action="store_true", help="prepare for both engines")
    mp.set_defaults(func=cmd_models_prepare)

    config = sub.add_parser("config", help="inspect configuration")
    csub = config.add_subparsers(dest="config_command", required=True)
    cs = csub.add_parser("show", help="print the effective settings")
    common(cs)
    cs.add_argument("--format", default="json", choices=["json", "yaml", "env"])
    cs.set_defaults(func=cmd_config_show)
    cd = csub.add_parser("docs", help="regenerate the settings tables of the configuration doc")
    cd.add_argument("--file", default="docs/configuration.md")
    cd.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    cd.set_defaults(func=cmd_config_docs)
    cv = csub.add_parser("validate", help="check every deployment rule; exit 1 on problems")
    common(cv)
    cv.set_defaults(func=cmd_config_validate)

    deploy = sub.add_parser("deploy", help="deployment files")
    dsub = deploy.add_subparsers(dest="deploy_command", required=True)
    dr = dsub.add_parser("render", help="write deployment/cloud-run/service.ENV.yaml, env.ENV.yaml")
    dr.add_argument("--env", dest="app_env", choices=["production", "staging", "development"])
    dr.add_argument("--image", default="__IMAGE__", help="container image (default: placeholder)")
    dr.add_argument("--output-dir", default="deployment/cloud-run")
    dr.set_defaults(func=cmd_deploy_render)
    return parser


def _formats() -> list[Any]:
    from whisper_service.formats import ResponseFormat

    return list(ResponseFormat)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``whisper-service`` console script."""
    from whisper_service.errors import ServiceError
    from whisper_service.models import ModelNotFound

    args = build_parser().parse_args(argv)
    # numpy's OpenBLAS only builds mel features here, and its thread pool spins after
    # every call: on 2 CPUs it took a core from CTranslate2 (two single-threaded
    # processes ran 1.6x faster than one instead of 1.9x). Set before numpy loads, in
    # this process and every one it starts (gunicorn's workers); an operator's wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        return int(args.func(args))
    except (SettingsError, ModelNotFound, ServiceError, ValueError, OSError) as exc:
        print(f"whisper-service: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR


if __name__ == "__main__":
    sys.exit(main())
