from parley.engine.models.base import ChatMessage, ToolSpec
from parley.engine.tool_router import route

TOOLS = [
    ToolSpec("get_weather", "Get the current weather for a city."),
    ToolSpec("get_current_time", "Current time in a timezone."),
    ToolSpec("add_note", "Add a note to the session's notes list."),
]


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage("system", "x"), ChatMessage("user", text)]


def test_routes_by_subject_and_by_name() -> None:
    assert route(user("What's the weather like in Paris?"), TOOLS) == "get_weather"
    assert route(user("What time is it in Tokyo?"), TOOLS) == "get_current_time"
    assert route(user("Please use add_note to remember milk."), TOOLS) == "add_note"
    assert route(user("Take a note: buy milk."), TOOLS) == "add_note"


def test_no_route_for_chat_or_after_a_tool_result() -> None:
    assert route(user("What is the capital of France?"), TOOLS) is None
    after_tool = [*user("weather in Paris?"), ChatMessage("tool", "sunny", tool_call_id="call_1")]
    assert route(after_tool, TOOLS) is None
    assert route(user("weather?"), []) is None


def test_choose_answers_tool_results_in_words() -> None:
    from parley.engine.tool_router import choose

    assert choose(user("weather in Paris?"), TOOLS).name == "get_weather"
    after_tool = [*user("weather in Paris?"), ChatMessage("tool", "sunny", tool_call_id="call_1")]
    assert choose(after_tool, TOOLS).mode == "none"
    assert choose(user("Tell me a joke."), TOOLS).mode == "auto"
