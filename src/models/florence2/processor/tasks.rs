//! Task prompts (`<CAPTION>`, `<OD>`, ...) to the sentences the model was trained on, as
//! transformers' `Florence2Processor._construct_prompts` does.

use super::ProcessorError;

/// Tasks whose prompt is the task token alone, with their sentences, in transformers' order
/// (the order decides which token an error names when a prompt holds several).
pub const TASKS_WITHOUT_INPUT: [(&str, &str); 8] = [
    ("<OCR>", "What is the text in the image?"),
    (
        "<OCR_WITH_REGION>",
        "What is the text in the image, with regions?",
    ),
    ("<CAPTION>", "What does the image describe?"),
    (
        "<DETAILED_CAPTION>",
        "Describe in detail what is shown in the image.",
    ),
    (
        "<MORE_DETAILED_CAPTION>",
        "Describe with a paragraph what is shown in the image.",
    ),
    (
        "<OD>",
        "Locate the objects with category name in the image.",
    ),
    (
        "<DENSE_REGION_CAPTION>",
        "Locate the objects in the image, with their descriptions.",
    ),
    (
        "<REGION_PROPOSAL>",
        "Locate the region proposals in the image.",
    ),
];

/// Tasks followed by an input (a caption, an expression, a region as `<loc_*>` tokens), with
/// their sentence templates (`{input}` is replaced by the input), in transformers' order.
pub const TASKS_WITH_INPUT: [(&str, &str); 7] = [
    (
        "<CAPTION_TO_PHRASE_GROUNDING>",
        "Locate the phrases in the caption: {input}",
    ),
    (
        "<REFERRING_EXPRESSION_SEGMENTATION>",
        "Locate {input} in the image with mask",
    ),
    (
        "<REGION_TO_SEGMENTATION>",
        "What is the polygon mask of region {input}",
    ),
    (
        "<OPEN_VOCABULARY_DETECTION>",
        "Locate {input} in the image.",
    ),
    ("<REGION_TO_CATEGORY>", "What is the region {input}?"),
    (
        "<REGION_TO_DESCRIPTION>",
        "What does the region {input} describe?",
    ),
    ("<REGION_TO_OCR>", "What text is in the region {input}?"),
];

/// Python's `str.isspace`: Rust's Unicode `White_Space` plus the four ASCII separators
/// U+001C..U+001F that Python also strips.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Turns a prompt into the sentence Florence-2 reads, exactly as transformers'
/// `Florence2Processor` does:
///
/// * a task without input (`<CAPTION>`, `<OD>`, ...) must be the whole prompt and becomes its
///   sentence ("What does the image describe?");
/// * a task with input (`<CAPTION_TO_PHRASE_GROUNDING>a cat`) is removed from the prompt (every
///   occurrence), the rest is stripped of white space and put into the task's template;
/// * anything else (free text for visual question answering) is kept unchanged.
///
/// Fails with [`ProcessorError::TaskNotAlone`] when a task without input is not the whole
/// prompt.
pub fn construct_prompt(prompt: &str) -> Result<String, ProcessorError> {
    let mut prompt = prompt.to_string();
    for (task, sentence) in TASKS_WITHOUT_INPUT {
        if prompt.contains(task) {
            if prompt != task {
                return Err(ProcessorError::TaskNotAlone {
                    task: task.to_string(),
                    prompt,
                });
            }
            prompt = sentence.to_string();
            break;
        }
    }
    for (task, template) in TASKS_WITH_INPUT {
        if prompt.contains(task) {
            let input = prompt.replace(task, "");
            let input = input.trim_matches(is_python_space);
            prompt = template.replace("{input}", input);
            break;
        }
    }
    Ok(prompt)
}
