# Writes template_cases.json: chat templates taken from the GGUF metadata of SmolLM2-135M-Instruct
# and Qwen2.5-Coder-0.5B-Instruct, rendered by Python's jinja2 the way Hugging Face
# transformers' `apply_chat_template` does (ImmutableSandboxedEnvironment, trim_blocks,
# lstrip_blocks, loopcontrols, tojson = json.dumps(ensure_ascii=False), raise_exception).
# Messages are given in mlx-serve's `ChatMessage` shape and converted as template.rs documents:
# tool_calls -> [{"id", "type": "function", "function": {"name", "arguments": parsed JSON}}].
# Usage: python gen_template_cases.py SMOLLM2.gguf QWEN.gguf > template_cases.json
import json, sys
import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from gguf import GGUFReader

def template_of(path):
    return GGUFReader(path).fields["tokenizer.chat_template"].contents()

def to_hf(m):
    out = {"role": m["role"], "content": m["content"]}
    if m.get("tool_calls"):
        calls = []
        for c in m["tool_calls"]:
            try:
                args = json.loads(c["arguments"])
            except ValueError:
                args = c["arguments"]
            calls.append({"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": args}})
        out["tool_calls"] = calls
    for k in ("tool_call_id", "name"):
        if m.get(k) is not None:
            out[k] = m[k]
    return out

def render(source, messages, tools, add_generation_prompt, bos, eos):
    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)
    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source).render(
        messages=[to_hf(m) for m in messages], tools=tools or None,
        add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos)

# Tool schemas with keys in sorted order: mlx-serve's JSON maps are sorted (serde_json without
# preserve_order), Python keeps insertion order; sorted input makes both render the same.
weather = {"function": {"description": "Get the current weather in a city, e.g. \"Paris\" — in °C.",
                        "name": "get_weather",
                        "parameters": {"properties": {"city": {"description": "City name", "type": "string"},
                                                      "unit": {"enum": ["c", "f"], "type": "string"}},
                                       "required": ["city"], "type": "object"}},
           "type": "function"}
smollm, qwen = template_of(sys.argv[1]), template_of(sys.argv[2])
cases = []
def case(name, source, messages, tools, agp, bos, eos):
    cases.append({"name": name, "template": source, "messages": messages, "tools": tools,
                  "add_generation_prompt": agp, "bos_token": bos, "eos_token": eos,
                  "expected": render(source, messages, tools, agp, bos, eos)})

case("smollm2_system_user", smollm,
     [{"role": "system", "content": "You are a helpful assistant."},
      {"role": "user", "content": "What is the capital of France? Réponds en français 🙂"}],
     [], True, "<|im_start|>", "<|im_end|>")
case("smollm2_default_system", smollm,
     [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
      {"role": "user", "content": "Bye"}],
     [], False, "<|im_start|>", "<|im_end|>")
case("qwen25_tools_call_result", qwen,
     [{"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": "",
       "tool_calls": [{"id": "call_1", "name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"c\"}"}]},
      {"role": "tool", "content": "{\"temp\": 21}", "tool_call_id": "call_1", "name": "get_weather"}],
     [weather], True, "<|endoftext|>", "<|im_end|>")
case("qwen25_no_tools_with_system", qwen,
     [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
     [], True, "<|endoftext|>", "<|im_end|>")
json.dump(cases, sys.stdout, indent=1, ensure_ascii=False)
