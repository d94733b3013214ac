"""The settings' fields, one module per group of what they configure.

Each group is a plain pydantic model, with the validators of its own fields and the
rules among them; ``Settings`` combines the groups with the sources (environment,
preset) and keeps only the rules that span groups. Every field is bounded and
described: the description is the documentation (``whisper-service config docs``).
"""

from whisper_service.config.fields.deployment import PlatformFields
from whisper_service.config.fields.environment import EnvironmentFields
from whisper_service.config.fields.health import HealthFields
from whisper_service.config.fields.jobs import JobsFields
from whisper_service.config.fields.lifecycle import LifecycleFields
from whisper_service.config.fields.limits import LimitsFields
from whisper_service.config.fields.logs import LoggingFields
from whisper_service.config.fields.model import ModelFields
from whisper_service.config.fields.realtime import RealtimeFields
from whisper_service.config.fields.security import SecurityFields
from whisper_service.config.fields.serving import ServingFields
from whisper_service.config.fields.shared import EngineName
from whisper_service.config.fields.storage import StorageFields

__all__ = [
    "EngineName",
    "EnvironmentFields",
    "HealthFields",
    "JobsFields",
    "LifecycleFields",
    "LimitsFields",
    "LoggingFields",
    "ModelFields",
    "PlatformFields",
    "RealtimeFields",
    "SecurityFields",
    "ServingFields",
    "StorageFields",
]
