"""The seed document's example, as written, on the embedded default model (available offline).

    python examples/seed.py            # (venv active: . .venv/bin/activate) then: curl 'http://127.0.0.1:8000/ask?question=What+is+an+OS%3F'
"""

from llmasos import LLM, Application

# 加载 LLM 模型 (the seed loads "gpt2"; that works too when it is in your Hugging Face cache)
model = LLM.from_pretrained("smollm2-135m")

# 创建问答应用
app = Application(model)


# 定义问答函数
@app.route("/ask")
def ask(question):
    answer = model.generate_text(question, max_length=100)
    return answer


# 运行应用
app.run()
