"""The request, response, stream and tool models shared by providers, middleware and the
gateway — the seed's ``models.*`` types — each convertible to and from the OpenAI
chat-completions wire format.

>>> from helixlab.llm import ChatRequest, Message
>>> request = ChatRequest(model="mock-small", messages=[Message.user("Hi")])
>>> request.to_openai()
{'model': 'mock-small', 'messages': [{'role': 'user', 'content': 'Hi'}]}
"""

from ._errors import error_body, error_type
from ._messages import Message, Role
from ._provider import Provider, ProviderCapabilities
from ._request import ChatRequest
from ._response import ChatResponse, confidence_from_logprobs
from ._sse import aiter_sse_chunks, encode_sse, iter_sse_chunks
from ._stream import StreamAccumulator, StreamChunk, ToolCallDelta, aaccumulate, accumulate
from ._tools import Tool, ToolCall, ToolDefinition
from ._usage import Usage

__all__ = [
    "ChatRequest",
    "ChatResponse",
    "Message",
    "Provider",
    "ProviderCapabilities",
    "Role",
    "StreamAccumulator",
    "StreamChunk",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolDefinition",
    "Usage",
    "aaccumulate",
    "accumulate",
    "aiter_sse_chunks",
    "confidence_from_logprobs",
    "encode_sse",
    "error_body",
    "error_type",
    "iter_sse_chunks",
]
