//! ComfyUI images: the `prompt` text chunk ComfyUI's SaveImage node writes is the API graph that made the image
//! (`{"3": {"class_type": "KSampler", "inputs": {"seed": 5, "model": ["10", 0], …}}, …}`; a list `[node, output]`
//! is a link). A graph is read when it has one KSampler (or KSamplerAdvanced) whose prompts are CLIPTextEncode
//! nodes with literal text, whose latent is an EmptyLatentImage, and whose model comes from a checkpoint loader
//! through LoraLoader / LoraLoaderModelOnly nodes (the loader names the file and its strengths). Anything else is
//! refused with the node that could not be read.

use serde_json::{Map, Value};

use super::settings::{ImageSettings, TagLora};

/// The graph's nodes by id.
struct Graph<'a> {
    nodes: &'a Map<String, Value>,
}

/// The checkpoint name, the LoRAs in the order they are applied, and the model patches on the way.
type ModelChain = (String, Vec<TagLora>, Vec<(String, String)>);

/// Longest model chain followed (a cycle in a broken graph stops here).
const MAX_CHAIN: usize = 64;

/// Reads a ComfyUI `prompt` graph; the reason (naming the node) when it cannot be read.
pub fn from_comfy_prompt(json: &str) -> Result<ImageSettings, String> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| format!("its prompt chunk is not JSON: {e}"))?;
    let nodes = value
        .as_object()
        .ok_or("its prompt chunk is not a JSON object of nodes")?;
    Graph { nodes }.settings()
}

impl<'a> Graph<'a> {
    fn settings(&self) -> Result<ImageSettings, String> {
        let (id, sampler) = self.sampler()?;
        let seed_key = match class(sampler) {
            "KSamplerAdvanced" => "noise_seed",
            _ => "seed",
        };
        let (model_name, loras, mut others) = self.model_chain(id, sampler)?;
        let latent = self.linked(id, sampler, "latent_image")?;
        if class(latent.1) != "EmptyLatentImage" {
            return Err(format!(
                "the latent of sampler node {id} comes from node {} ({}), not an EmptyLatentImage (a second pass or img2img?)",
                latent.0,
                class(latent.1)
            ));
        }
        if let Some(denoise) = input(sampler, "denoise").and_then(Value::as_f64) {
            if denoise != 1.0 {
                others.push(("Denoising strength".to_string(), denoise.to_string()));
            }
        }
        Ok(ImageSettings {
            prompt: self.text(id, sampler, "positive")?,
            negative: self.text(id, sampler, "negative")?,
            seed: self
                .number(id, sampler, seed_key)?
                .as_u64()
                .ok_or_else(|| {
                    format!("the {seed_key} of sampler node {id} is not a whole number")
                })?,
            steps: self.whole(id, sampler, "steps")?,
            cfg: self.float(id, sampler, "cfg")?,
            sampler: format!(
                "{} {}",
                self.string(id, sampler, "sampler_name")?,
                self.string(id, sampler, "scheduler")?
            ),
            width: self.whole(latent.0, latent.1, "width")? as u32,
            height: self.whole(latent.0, latent.1, "height")? as u32,
            clip_skip: self.clip_skip(),
            model_hash: None,
            model_name: Some(model_name),
            vae: self.vae(),
            loras,
            lora_hashes: Vec::new(),
            others,
        })
    }

    /// The one sampler node.
    fn sampler(&self) -> Result<(&'a str, &'a Value), String> {
        let samplers: Vec<(&str, &Value)> = self
            .nodes
            .iter()
            .filter(|(_, n)| matches!(class(n), "KSampler" | "KSamplerAdvanced"))
            .map(|(id, n)| (id.as_str(), n))
            .collect();
        match samplers.as_slice() {
            [one] => Ok(*one),
            [] => Err("no KSampler or KSamplerAdvanced node in its prompt graph".to_string()),
            many => Err(format!(
                "{} sampler nodes in its prompt graph ({}); only single-pass graphs are read",
                many.len(),
                many.iter()
                    .map(|(id, _)| format!("node {id}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// Follows the sampler's model input back to the checkpoint loader.
    fn model_chain(&self, sampler_id: &'a str, sampler: &'a Value) -> Result<ModelChain, String> {
        let (mut loras, mut patches) = (Vec::new(), Vec::new());
        let (mut id, mut node) = (sampler_id, sampler);
        for _ in 0..MAX_CHAIN {
            let (next_id, next) = self.linked(id, node, "model")?;
            match class(next) {
                "CheckpointLoaderSimple" | "CheckpointLoader" | "unCLIPCheckpointLoader" => {
                    let name = self.string(next_id, next, "ckpt_name")?;
                    loras.reverse();
                    return Ok((name, loras, patches));
                }
                "LoraLoader" | "LoraLoaderModelOnly" => loras.push(self.lora(next_id, next)?),
                other => patches.push((
                    "Model patch".to_string(),
                    format!("{other} (node {next_id})"),
                )),
            }
            (id, node) = (next_id, next);
        }
        Err(format!(
            "the model chain of its prompt graph is longer than {MAX_CHAIN} nodes"
        ))
    }

    fn lora(&self, id: &str, node: &Value) -> Result<TagLora, String> {
        let file = self.string(id, node, "lora_name")?;
        let stem = file.rsplit(['/', '\\']).next().unwrap_or(&file);
        let name = stem
            .rsplit_once('.')
            .map_or(stem, |(base, _)| base)
            .to_string();
        let unet = self.float(id, node, "strength_model")?;
        let te = match class(node) {
            "LoraLoaderModelOnly" => 0.0,
            _ => self.float(id, node, "strength_clip")?,
        };
        Ok(TagLora { name, te, unet })
    }

    /// The literal text of the CLIPTextEncode node linked at `key`.
    fn text(&self, id: &str, node: &Value, key: &str) -> Result<String, String> {
        let (text_id, text_node) = self.linked(id, node, key)?;
        if class(text_node) != "CLIPTextEncode" {
            return Err(format!(
                "the {key} prompt of node {id} comes from node {text_id} ({}), not a CLIPTextEncode",
                class(text_node)
            ));
        }
        self.string(text_id, text_node, "text")
    }

    /// `stop_at_clip_layer: -2` of a CLIPSetLastLayer node is A1111's clip skip 2.
    fn clip_skip(&self) -> u32 {
        self.nodes
            .values()
            .filter(|n| class(n) == "CLIPSetLastLayer")
            .find_map(|n| input(n, "stop_at_clip_layer")?.as_i64())
            .map_or(1, |layer| layer.unsigned_abs() as u32)
    }

    fn vae(&self) -> Option<String> {
        self.nodes
            .values()
            .filter(|n| class(n) == "VAELoader")
            .find_map(|n| input(n, "vae_name")?.as_str().map(str::to_string))
    }

    /// The node a link input points to.
    fn linked(&self, id: &str, node: &Value, key: &str) -> Result<(&'a str, &'a Value), String> {
        let target = input(node, key)
            .and_then(Value::as_array)
            .and_then(|link| link.first())
            .and_then(|t| match t {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .ok_or_else(|| format!("node {id} ({}) has no {key} link", class(node)))?;
        self.nodes
            .get_key_value(&target)
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| {
                format!("the {key} of node {id} links to node {target}, which is not in the graph")
            })
    }

    fn number(&self, id: &str, node: &Value, key: &str) -> Result<serde_json::Number, String> {
        match literal(node, key) {
            Some(Value::Number(n)) => Ok(n.clone()),
            _ => Err(format!(
                "the {key} of node {id} ({}) is not a literal number (a link to another node?)",
                class(node)
            )),
        }
    }

    fn whole(&self, id: &str, node: &Value, key: &str) -> Result<usize, String> {
        self.number(id, node, key)?
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| format!("the {key} of node {id} is not a whole number"))
    }

    fn float(&self, id: &str, node: &Value, key: &str) -> Result<f64, String> {
        Ok(self.number(id, node, key)?.as_f64().unwrap_or_default())
    }

    fn string(&self, id: &str, node: &Value, key: &str) -> Result<String, String> {
        literal(node, key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                format!(
                    "the {key} of node {id} ({}) is not a literal text (a link to another node?)",
                    class(node)
                )
            })
    }
}

fn class(node: &Value) -> &str {
    node.get("class_type")
        .and_then(Value::as_str)
        .unwrap_or("?")
}

fn input<'v>(node: &'v Value, key: &str) -> Option<&'v Value> {
    node.get("inputs")?.get(key)
}

fn literal<'v>(node: &'v Value, key: &str) -> Option<&'v Value> {
    input(node, key).filter(|v| !v.is_array())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn graph(lora: Value) -> Value {
        json!({
            "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 20, "cfg": 7.5,
                  "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
                  "model": ["10", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768, "batch_size": 1}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "photo of sks woman", "clip": ["10", 1]}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["10", 1]}},
            "10": lora,
        })
    }

    #[test]
    fn reads_a_lora_loader_graph() {
        let lora = json!({"class_type": "LoraLoader", "inputs": {"lora_name": "faces/sks-000002.safetensors",
            "strength_model": 0.8, "strength_clip": 0.6, "model": ["4", 0], "clip": ["4", 1]}});
        let s = from_comfy_prompt(&graph(lora).to_string()).unwrap();
        assert_eq!(
            s.loras,
            vec![TagLora {
                name: "sks-000002".into(),
                te: 0.6,
                unet: 0.8
            }]
        );
        assert_eq!(
            (s.seed, s.steps, s.cfg, s.width, s.height),
            (42, 20, 7.5, 512, 768)
        );
        assert_eq!(s.prompt, "photo of sks woman");
        assert_eq!(s.negative, "blurry");
        assert_eq!(s.sampler, "euler normal");
        assert_eq!(
            s.model_name.as_deref(),
            Some("v1-5-pruned-emaonly.safetensors")
        );
    }

    #[test]
    fn refuses_what_it_cannot_read_naming_the_node() {
        let lora = json!({"class_type": "LoraLoader", "inputs": {"lora_name": ["12", 0],
            "strength_model": 1, "strength_clip": 1, "model": ["4", 0], "clip": ["4", 1]}});
        let error = from_comfy_prompt(&graph(lora).to_string()).unwrap_err();
        assert!(
            error.contains("lora_name of node 10 (LoraLoader)"),
            "{error}"
        );
        let mut two =
            graph(json!({"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x"}}));
        two["9"] = two["3"].clone();
        let error = from_comfy_prompt(&two.to_string()).unwrap_err();
        assert!(error.contains("2 sampler nodes"), "{error}");
        assert!(from_comfy_prompt("[1, 2]")
            .unwrap_err()
            .contains("not a JSON object"));
    }
}
