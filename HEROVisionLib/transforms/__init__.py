"""Layer transforms: every image transform in one place — tumour crops, network inputs made from a
package's recorded preprocessing block, training augmentation, and attention maps back onto the source
grids. Above io and ivim (it reads cases and fits IVIM maps), below models."""
