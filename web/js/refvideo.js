// Shows the text reports of RefVideo nodes (reference quality, credit estimate, ...) inside
// the node after it runs. The report widget is display-only and never saved in workflows.
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const REPORT = "refvideo_report";

app.registerExtension({
  name: "RefVideo.NodeReports",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!String(nodeData?.category || "").startsWith("RefVideo")) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const lines = message?.text;
      if (!lines || !lines.length) return;
      let widget = this.widgets?.find((w) => w.name === REPORT);
      if (!widget) {
        widget = ComfyWidgets["STRING"](this, REPORT, ["STRING", { multiline: true }], app).widget;
        widget.serialize = false;
        if (widget.inputEl) {
          widget.inputEl.readOnly = true;
          widget.inputEl.style.opacity = 0.85;
        }
      }
      widget.value = lines.join("\n");
      this.onResize?.(this.size);
      app.graph.setDirtyCanvas(true, false);
    };
  },
});
