from latent_edit_bench import api
from latent_edit_bench.contracts.metric import EditSet, Metric, mean_of


class ExpressionFlip(Metric):
    name = "expression-flip"
    title = "Dominant emotion changed by the edit"
    needs = ("emotion",)                 # instrument outputs read from the EditSet
    config = {}                          # options; unknown ones raise BenchError

    def measure(self, s: EditSet):
        # batched over the N samples, on whatever device the instruments ran on
        flipped = s.original["emotion"].argmax(1) != s.edited["emotion"].argmax(1)
        return {"flipped": flipped.float()}

    def quantities(self, attr, columns):
        return [mean_of("flipped", label="fraction of samples whose dominant emotion changed",
                        better="lower", table="expression-flip")]


@api.hookimpl
def register_metrics():
    return [api.Entry("expression-flip", ExpressionFlip, "fraction of samples whose dominant emotion changed")]
