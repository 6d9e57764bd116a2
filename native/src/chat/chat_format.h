// chat_format.h — chat formatting for the template families in use, detected from the template
// text (entry point of chat/). No Jinja engine: a template is recognised by the markers its family
// writes, and the family's format is produced here, equal to what the template renders in
// jinja2 for the conversations it accepts (tests/test_native_chat.py renders the real templates
// with edgert.chat_template and compares).
//
//   family   marker in the template         notes
//   chatml   <|im_start|>                   a default system turn written in the template
//                                           (SmolLM2, Qwen2) is added when the first message is
//                                           not a system message
//   llama3   <|start_header_id|>            content trimmed; BOS before the first turn. Llama 3.1+
//                                           templates (date / tool headers) are not this family
//   llama2   [INST] and <<SYS>>             system folded into the first user turn; BOS per turn
//   mistral  [INST] without <<SYS>>         BOS once; no system role
//   gemma    <start_of_turn>                assistant is "model"; no system role
//   phi3     <|user|> and <|end|>
// Anything else: EDGERT_ERR_UNSUPPORTED. A conversation the template itself would reject (roles
// not alternating, a system message where the family has none): EDGERT_ERR_INVALID_ARGUMENT.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace edgert {

struct ChatMessage {
    std::string role;
    std::string content;
};

enum class ChatFamily { kChatml, kLlama3, kLlama2, kMistral, kGemma, kPhi3, kPhi3Legacy };

// Throws StatusError(EDGERT_ERR_UNSUPPORTED) naming what was looked for.
ChatFamily detect_chat_family(std::string_view template_text);
const char* chat_family_name(ChatFamily family);

// The prompt text for messages. bos/eos: the model's BOS/EOS token texts (the template's
// bos_token / eos_token). Throws StatusError as described above.
std::string format_chat(std::string_view template_text, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt, const std::string& bos, const std::string& eos);

}  // namespace edgert
