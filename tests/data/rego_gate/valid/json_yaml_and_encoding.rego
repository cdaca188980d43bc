package gate

doc := json.unmarshal(input.body)

encoded := base64.encode(json.marshal(doc))

config := yaml.unmarshal(input.config)

same if json.marshal(doc) == json.marshal(config)
