"""Quantize a float torch model for Systola, end to end: export with a dynamic batch, prepare, calibrate,
convert, export again, save. Then `systola compile my_model_w4a4.pt2 -o out --act-bits 4 --weight-bits 4`.

    python examples/quantize_model.py            # writes my_model_w4a4.pt2 in the working directory
"""
import torch
from torch import nn

from emu.frontend import SystolaQuantizer, convert_pt2e, prepare_pt2e  # import from here: quiet torchao


class MyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(x, 1))


def main(path: str = "my_model_w4a4.pt2") -> None:
    model = MyModel().eval()                    # your trained model, in eval mode
    calibration = torch.rand(64, 1, 8, 8)       # a few batches of real inputs
    batch = {"x": {0: torch.export.Dim("batch")}}   # a dynamic batch: any number of samples later

    graph = torch.export.export(model, (calibration[:8],), dynamic_shapes=batch).module()
    prepared = prepare_pt2e(graph, SystolaQuantizer(act_bits=4, weight_bits=4))
    with torch.no_grad():
        for x in calibration.split(16):         # calibrate: observers record the ranges
            prepared(x)
    converted = convert_pt2e(prepared)
    exported = torch.export.export(converted, (calibration[:8],), dynamic_shapes=batch)
    torch.export.save(exported, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
